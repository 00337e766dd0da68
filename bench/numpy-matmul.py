# numpy's float32 matmul (OpenBLAS sgemm in numpy's wheels) for bench/kernels.ts, which runs this
# script as a child process and drives it line by line on stdin, one JSON answer per line on stdout:
#
#   (start)                 -> {"numpy": version, "blas": build config, "runtime": threads and core}
#   load N a_path b_path    -> {"ok": true}     the NxN float32 matrices, raw little-endian files
#   run                     -> {"ms": wall, "cpuMs": cpu}   one product a @ b, timed here
#   result path             -> {"ok": true}     the last product written as raw float32
#   quit
#
# Timing is taken in this process around the product alone (the result is allocated by numpy, as the
# other implementations allocate theirs); cpuMs is this process's CPU time, all threads. OpenBLAS
# uses every core unless OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) says otherwise.
import ctypes
import glob
import json
import os
import sys
import time

try:
    import numpy as np
except ImportError as error:
    print(json.dumps({"error": f"import numpy: {error}"}), flush=True)
    sys.exit(0)


def blas_build_config():
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return {key: blas.get(key) for key in ("name", "version", "openblas configuration")}
    except Exception as error:  # older numpy: no mode argument
        return {"error": str(error)}


def blas_runtime():
    """threads and kernel OpenBLAS chose at run time: threadpoolctl where present, else ctypes"""
    try:
        from threadpoolctl import threadpool_info

        return {"threadpoolctl": threadpool_info()}
    except ImportError:
        pass
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs", "*openblas*.so*")
    for path in glob.glob(libs):
        library = ctypes.CDLL(path)
        runtime = {"library": os.path.basename(path)}
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                try:
                    threads = getattr(library, f"{prefix}get_num_threads{suffix}")
                    corename = getattr(library, f"{prefix}get_corename{suffix}")
                except AttributeError:
                    continue
                corename.restype = ctypes.c_char_p
                runtime.update(threads=threads(), corename=corename().decode())
                return runtime
        return runtime
    return {"note": "no threadpoolctl and no OpenBLAS library found in numpy.libs"}


print(
    json.dumps({"numpy": np.__version__, "blas": blas_build_config(), "runtime": blas_runtime()}),
    flush=True,
)
a = b = c = None
SETTLE_SECONDS = 0.25
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "quit":
        break
    if words[0] == "load":
        size = int(words[1])
        a = np.fromfile(words[2], dtype="<f4").reshape(size, size)
        b = np.fromfile(words[3], dtype="<f4").reshape(size, size)
        answer = {"ok": True}
    elif words[0] == "run":
        wall, cpu = time.perf_counter(), time.process_time()
        c = a @ b
        answer = {"ms": (time.perf_counter() - wall) * 1e3, "cpuMs": (time.process_time() - cpu) * 1e3}
        # OpenBLAS's pthreads workers spin for a while (THREAD_TIMEOUT, about 0.1 s) after a call
        # before they sleep: answering only once they sleep keeps them off the cores that the
        # implementation timed next needs
        time.sleep(SETTLE_SECONDS)
    elif words[0] == "result":
        c.astype("<f4").tofile(words[1])
        answer = {"ok": True}
    else:
        answer = {"error": f"unknown command {words[0]}"}
    print(json.dumps(answer), flush=True)
