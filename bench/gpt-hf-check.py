"""Hugging Face's side of bench/gpt-hf-check.ts.

    python bench/gpt-hf-check.py MODEL_DIR INPUTS_JSON OUTPUT_JSON

Loads MODEL_DIR (written by shardnet's saveGptModel) with transformers.GPT2LMHeadModel.from_pretrained
as it is, runs every prompt of INPUTS_JSON ({"prompts": [[byte, ...], ...], "generate": {"prompt":
[...], "tokens": N}}) in eval mode in float32 and again in float64, generates greedily, and writes
OUTPUT_JSON. A missing package is reported as {"missing": "..."} with exit status 3.
"""

import json
import sys

MISSING_EXIT = 3


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, inputs_path, output_path = sys.argv[1:]
    try:
        import safetensors  # noqa: F401  (transformers reads model.safetensors with it)
        import torch
        import transformers
    except ImportError as error:
        with open(output_path, "w") as out:
            json.dump({"missing": str(error)}, out)
        return MISSING_EXIT

    with open(inputs_path) as f:
        inputs = json.load(f)
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, info = transformers.GPT2LMHeadModel.from_pretrained(
        model_dir, output_loading_info=True, torch_dtype=torch.float32
    )
    model.eval()
    head = model.lm_head.weight
    wte = model.transformer.wte.weight
    loading = {
        key: sorted(str(name) for name in value) if isinstance(value, (list, set, tuple)) else str(value)
        for key, value in info.items()
    }
    result = {
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "loading": loading,
        "parameterCount": model.num_parameters(),
        "headTied": head.data_ptr() == wte.data_ptr(),
        "dtype": str(next(model.parameters()).dtype),
        "logits": [],
        "logits64": [],
    }
    model64 = transformers.GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float64).eval()
    with torch.no_grad():
        for prompt in inputs["prompts"]:
            ids = torch.tensor([prompt], dtype=torch.long)
            result["logits"].append(model(input_ids=ids).logits[0].reshape(-1).tolist())
            result["logits64"].append(model64(input_ids=ids).logits[0].reshape(-1).tolist())
        spec = inputs["generate"]
        ids = torch.tensor([spec["prompt"]], dtype=torch.long)
        # bytes have no end-of-text token: config.json's eos 0 must not stop the greedy run early
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        generated = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=spec["tokens"],
            min_new_tokens=spec["tokens"],
            do_sample=False,
            num_beams=1,
        )
        result["generated"] = generated[0, ids.shape[1] :].tolist()
    with open(output_path, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
