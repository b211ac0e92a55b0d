// Timestamp queries around compute passes: interval k is written at queries 2k (begin)
// and 2k+1 (end). A query set holds at most 4096 queries, so long profiles use several.
const PER_SET = 4096;

export class PassTimer {
  private readonly sets: GPUQuerySet[] = [];
  private readonly resolveBuf: GPUBuffer;
  private readonly readBuf: GPUBuffer;

  constructor(
    device: GPUDevice,
    /** Number of intervals timed. */
    readonly intervals: number,
  ) {
    const queries = Math.max(2, intervals * 2);
    for (let q = 0; q < queries; q += PER_SET) {
      this.sets.push(device.createQuerySet({ type: 'timestamp', count: Math.min(PER_SET, queries - q) }));
    }
    this.resolveBuf = device.createBuffer({
      size: queries * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.readBuf = device.createBuffer({
      size: queries * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** Timestamp writes for a pass that begins and/or ends interval k. */
  writes(k: number, begin: boolean, end: boolean): GPUComputePassTimestampWrites {
    // PER_SET is even, so both queries of an interval lie in one set.
    const set = this.sets[Math.floor((2 * k) / PER_SET)];
    const q = (2 * k) % PER_SET;
    return {
      querySet: set,
      ...(begin ? { beginningOfPassWriteIndex: q } : {}),
      ...(end ? { endOfPassWriteIndex: q + 1 } : {}),
    };
  }

  /** Records the copy of every query to the readable buffer (after the last timed pass). */
  record(enc: GPUCommandEncoder): void {
    this.sets.forEach((s, i) => {
      enc.resolveQuerySet(s, 0, s.count, this.resolveBuf, i * PER_SET * 8);
    });
    enc.copyBufferToBuffer(this.resolveBuf, 0, this.readBuf, 0, this.readBuf.size);
  }

  /** Milliseconds of each interval, once the submitted work is done. */
  async read(): Promise<number[]> {
    await this.readBuf.mapAsync(GPUMapMode.READ);
    const t = new BigInt64Array(this.readBuf.getMappedRange());
    const ms = Array.from({ length: this.intervals }, (_, k) => Number(t[2 * k + 1] - t[2 * k]) / 1e6);
    this.readBuf.unmap();
    return ms;
  }

  destroy(): void {
    for (const s of this.sets) s.destroy();
    this.resolveBuf.destroy();
    this.readBuf.destroy();
  }
}
