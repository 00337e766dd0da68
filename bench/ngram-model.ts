// A byte n-gram language model with interpolated modified Kneser-Ney smoothing (Chen & Goodman,
// "An empirical study of smoothing techniques for language modeling", 1998, section 3.5): the
// baseline the GPT model kind's bits per byte are compared with.
//
// For an order-k n-gram hw (h the k-1 previous bytes, w the next byte) with count a(hw):
//
//   p_k(w | h) = ( max(a(hw) - D_k(a(hw)), 0) + γ_k(h) · p_{k-1}(w | h') ) / s_k(h)
//   γ_k(h)     = D_k1 · N1(h•) + D_k2 · N2(h•) + D_k3+ · N3+(h•)
//   s_k(h)     = Σ_w a(hw)
//
// where h' drops the first byte of h, N_j(h•) counts the bytes w with a(hw) = j (N3+: >= 3), and
// p_0 = 1/256 (uniform). The top order uses raw counts; every lower order uses continuation counts
// a(hw) = N1+(•hw), the number of distinct bytes seen before hw. When s_k(h) = 0 (h never seen as a
// context at order k) p_k = p_{k-1}. The three discounts of each order come from its count-of-counts
// n1..n4: Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3, each
// clamped to [DISCOUNT_MIN, j]: the cap keeps D within the count it discounts (so p_k sums to exactly
// 1 over the 256 bytes) and the floor keeps some mass for unseen bytes (γ_k(h) > 0); an undefined
// value (0/0) becomes DISCOUNT_MIN. On the linux-doc training split this only happens at order 1
// (181 distinct bytes, n1..n4 = 3, 1, 0, 0: D3+ = 3 - 0/0), where any D3+ in [0.1, 3] moves the
// order-5 figure by less than 1e-5 bits per byte.
//
// Storage: one open-addressing hash table per order and per role (n-grams, contexts) whose key is a
// position in the training text where that n-gram occurs (4 bytes per entry whatever the order),
// compared byte by byte against the text, with the 32-bit hash kept beside it. Only the top order
// scans the text; each lower order is built from the distinct entries of the order above.

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193
const EMPTY = -1
const INITIAL_CAPACITY_LOG2 = 12
/** one byte more than the largest byte value: the vocabulary of the byte model */
export const BYTE_VOCABULARY = 256
export const ORDER_MAX = 16
/** smallest discount: a positive one leaves every context some probability for unseen bytes */
export const DISCOUNT_MIN = 0.1

function finish(state: number): number {
  let mixed = state >>> 0
  mixed ^= mixed >>> 16
  mixed = Math.imul(mixed, 0x85ebca6b)
  mixed ^= mixed >>> 13
  mixed = Math.imul(mixed, 0xc2b2ae35)
  mixed ^= mixed >>> 16
  return mixed >>> 0
}

/** FNV-1a state after bytes [offset, offset + length) of `bytes`, before the final mix. */
function fnvState(bytes: Uint8Array, offset: number, length: number): number {
  let state = FNV_OFFSET
  for (let i = offset; i < offset + length; i++) state = Math.imul(state ^ bytes[i], FNV_PRIME)
  return state
}

/**
 * The distinct byte strings of one length that occur in `text`, each with `stride` 32-bit values.
 * An entry's key is a position of the string in `text`.
 */
class GramTable {
  private positions: Int32Array
  private hashes: Uint32Array
  values: Uint32Array
  private mask: number
  /** number of distinct strings held */
  size = 0

  constructor(
    private readonly text: Uint8Array,
    /** length in bytes of every string in the table */
    readonly length: number,
    /** 32-bit values per entry */
    readonly stride: number,
  ) {
    const capacity = 1 << INITIAL_CAPACITY_LOG2
    this.positions = new Int32Array(capacity).fill(EMPTY)
    this.hashes = new Uint32Array(capacity)
    this.values = new Uint32Array(capacity * stride)
    this.mask = capacity - 1
  }

  get capacity(): number {
    return this.positions.length
  }

  /** bytes held by the table's arrays */
  get byteSize(): number {
    return this.positions.byteLength + this.hashes.byteLength + this.values.byteLength
  }

  /** slot of the string at text[position, position + length), added with zero values if missing */
  slotOf(position: number): number {
    const hash = finish(fnvState(this.text, position, this.length))
    const slot = this.probe(this.text, position, hash)
    if (this.positions[slot] !== EMPTY) return slot
    if ((this.size + 1) * 2 > this.positions.length) {
      this.grow()
      return this.slotOf(position)
    }
    this.positions[slot] = position
    this.hashes[slot] = hash
    this.size++
    return slot
  }

  /** slot of bytes[offset, offset + length) (any buffer) given its hash, or -1 if absent */
  find(bytes: Uint8Array, offset: number, hash: number): number {
    const slot = this.probe(bytes, offset, hash)
    return this.positions[slot] === EMPTY ? -1 : slot
  }

  /** calls visit(slot, position) for every entry */
  forEach(visit: (slot: number, position: number) => void): void {
    const positions = this.positions
    for (let slot = 0; slot < positions.length; slot++) {
      if (positions[slot] !== EMPTY) visit(slot, positions[slot])
    }
  }

  /** the slot holding bytes[offset..] or the empty slot where it would go */
  private probe(bytes: Uint8Array, offset: number, hash: number): number {
    const { positions, hashes, text, length, mask } = this
    let slot = hash & mask
    for (;;) {
      const position = positions[slot]
      if (position === EMPTY) return slot
      if (hashes[slot] === hash) {
        let equal = true
        for (let i = 0; i < length; i++) {
          if (text[position + i] !== bytes[offset + i]) {
            equal = false
            break
          }
        }
        if (equal) return slot
      }
      slot = (slot + 1) & mask
    }
  }

  private grow(): void {
    const oldPositions = this.positions
    const oldHashes = this.hashes
    const oldValues = this.values
    const capacity = oldPositions.length * 2
    const stride = this.stride
    this.positions = new Int32Array(capacity).fill(EMPTY)
    this.hashes = new Uint32Array(capacity)
    this.values = new Uint32Array(capacity * stride)
    this.mask = capacity - 1
    for (let old = 0; old < oldPositions.length; old++) {
      if (oldPositions[old] === EMPTY) continue
      let slot = oldHashes[old] & this.mask
      while (this.positions[slot] !== EMPTY) slot = (slot + 1) & this.mask
      this.positions[slot] = oldPositions[old]
      this.hashes[slot] = oldHashes[old]
      for (let v = 0; v < stride; v++) this.values[slot * stride + v] = oldValues[old * stride + v]
    }
  }
}

/** The three discounts of one order: [D1, D2, D3+]. */
export type Discounts = readonly [number, number, number]

/** Chen & Goodman's estimate from the count-of-counts n1..n4, each clamped to [DISCOUNT_MIN, j]. */
export function modifiedKneserNeyDiscounts(n1: number, n2: number, n3: number, n4: number): Discounts {
  const clamp = (value: number, high: number) =>
    Number.isFinite(value) ? Math.min(Math.max(value, DISCOUNT_MIN), high) : DISCOUNT_MIN
  const y = n1 + 2 * n2 > 0 ? n1 / (n1 + 2 * n2) : 0
  return [clamp(1 - (2 * y * n2) / n1, 1), clamp(2 - (3 * y * n3) / n2, 2), clamp(3 - (4 * y * n4) / n3, 3)]
}

/** Context statistics stored per context entry: s(h), N1(h•), N2(h•), N3+(h•). */
const CONTEXT_STRIDE = 4

export interface OrderStatistics {
  order: number
  /** distinct n-grams of this order (with a count or continuation count) */
  ngrams: number
  /** distinct contexts (n-1 bytes) of this order */
  contexts: number
  discounts: Discounts
}

export class KneserNeyModel {
  /** ngrams[k]: the order-k n-grams (k bytes) with their count (top order) or continuation count */
  private readonly ngrams: GramTable[] = []
  /** contexts[k]: the (k-1)-byte contexts of order k with s, N1, N2, N3+ */
  private readonly contexts: GramTable[] = []
  /** discountTable[k * 4 + j]: D_kj for j = 1..3 (index 0 unused, 0) */
  private readonly discountTable: Float64Array

  private constructor(
    readonly order: number,
    text: Uint8Array,
  ) {
    this.discountTable = new Float64Array((order + 1) * 4)
    for (let k = 0; k <= order; k++) {
      this.ngrams.push(new GramTable(text, k, 1))
      this.contexts.push(new GramTable(text, Math.max(k - 1, 0), CONTEXT_STRIDE))
    }
  }

  /** Counts every n-gram of `text` up to `order` bytes (the text as one stream). */
  static train(text: Uint8Array, order: number): KneserNeyModel {
    if (!Number.isInteger(order) || order < 1 || order > ORDER_MAX) {
      throw new RangeError(`order must be an integer in [1, ${ORDER_MAX}], got ${order}`)
    }
    if (text.length < order) throw new RangeError(`the text has fewer than ${order} bytes`)
    const model = new KneserNeyModel(order, text)
    // top order: raw counts
    const top = model.ngrams[order]
    for (let position = 0; position + order <= text.length; position++) {
      top.values[top.slotOf(position)]++
    }
    // lower orders: continuation counts, one per distinct n-gram of the order above ending in it
    for (let k = order - 1; k >= 1; k--) {
      const lower = model.ngrams[k]
      model.ngrams[k + 1].forEach((_, position) => {
        lower.values[lower.slotOf(position + 1)]++
      })
    }
    for (let k = 1; k <= order; k++) {
      const ngrams = model.ngrams[k]
      const contexts = model.contexts[k]
      const countOfCounts = [0, 0, 0, 0, 0]
      ngrams.forEach((slot, position) => {
        const count = ngrams.values[slot]
        if (count <= 4) countOfCounts[count]++
        const context = contexts.slotOf(position) * CONTEXT_STRIDE
        contexts.values[context] += count
        contexts.values[context + Math.min(count, 3)]++
      })
      const [d1, d2, d3] = modifiedKneserNeyDiscounts(
        countOfCounts[1],
        countOfCounts[2],
        countOfCounts[3],
        countOfCounts[4],
      )
      model.discountTable[k * 4 + 1] = d1
      model.discountTable[k * 4 + 2] = d2
      model.discountTable[k * 4 + 3] = d3
    }
    return model
  }

  statistics(): OrderStatistics[] {
    const rows: OrderStatistics[] = []
    for (let k = 1; k <= this.order; k++) {
      const d = this.discountTable
      rows.push({
        order: k,
        ngrams: this.ngrams[k].size,
        contexts: this.contexts[k].size,
        discounts: [d[k * 4 + 1], d[k * 4 + 2], d[k * 4 + 3]],
      })
    }
    return rows
  }

  /** bytes held by the model's tables */
  get byteSize(): number {
    let total = 0
    for (let k = 1; k <= this.order; k++) total += this.ngrams[k].byteSize + this.contexts[k].byteSize
    return total
  }

  /**
   * p(stream[position] | the up to order-1 bytes of `stream` before it): the context is shorter at
   * the start of the stream.
   */
  probabilityAt(stream: Uint8Array, position: number): number {
    let probability = 1 / BYTE_VOCABULARY
    const highest = Math.min(this.order, position + 1)
    for (let k = 1; k <= highest; k++) {
      const start = position - k + 1
      // FNV over the context, then one more byte for the n-gram
      const state = fnvState(stream, start, k - 1)
      const contexts = this.contexts[k]
      const context = contexts.find(stream, start, finish(state))
      // a context unseen at order k is unseen at every higher order (it is a suffix of theirs)
      if (context < 0) break
      const base = context * CONTEXT_STRIDE
      const values = contexts.values
      const total = values[base]
      const ngrams = this.ngrams[k]
      const slot = ngrams.find(stream, start, finish(Math.imul(state ^ stream[position], FNV_PRIME)))
      const count = slot < 0 ? 0 : ngrams.values[slot]
      const d = this.discountTable
      const discount = count === 0 ? 0 : d[k * 4 + Math.min(count, 3)]
      const gamma =
        d[k * 4 + 1] * values[base + 1] + d[k * 4 + 2] * values[base + 2] + d[k * 4 + 3] * values[base + 3]
      probability = (Math.max(count - discount, 0) + gamma * probability) / total
    }
    return probability
  }

  /** p(next | context), the context's last order-1 bytes used. */
  probability(context: Uint8Array, next: number): number {
    const stream = new Uint8Array(context.length + 1)
    stream.set(context)
    stream[context.length] = next
    return this.probabilityAt(stream, context.length)
  }

  /** Total -log2 p of every byte of `stream`, each conditioned on the bytes before it in `stream`. */
  crossEntropyBits(stream: Uint8Array): number {
    let bits = 0
    for (let position = 0; position < stream.length; position++) {
      bits -= Math.log2(this.probabilityAt(stream, position))
    }
    return bits
  }
}

/** Bits per byte of `stream` under the add-one unigram byte model of `text`. */
export function unigramAddOneBitsPerByte(text: Uint8Array, stream: Uint8Array): number {
  const counts = new Float64Array(BYTE_VOCABULARY)
  for (let i = 0; i < text.length; i++) counts[text[i]]++
  const total = text.length + BYTE_VOCABULARY
  let bits = 0
  for (let i = 0; i < stream.length; i++) bits -= Math.log2((counts[stream[i]] + 1) / total)
  return bits / stream.length
}
