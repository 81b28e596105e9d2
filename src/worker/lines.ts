/**
 * Text plumbing for task output: a line-splitting TransformStream and a bounded ring buffer.
 * Knows nothing about processes or RPC.
 * @module
 */

/** Longest line kept in one piece; longer lines are split into chunks of this many characters. */
export const MAX_LINE_CHARS = 64 * 1024;

/**
 * A TransformStream that turns decoded text chunks into lines without their terminators.
 * Handles "\n" and "\r\n", emits a final partial line at end of stream, and splits lines longer
 * than `maxLineChars` into several lines so one runaway line cannot exhaust memory.
 */
export function lineSplitter(
  maxLineChars: number = MAX_LINE_CHARS,
): TransformStream<string, string> {
  if (!(maxLineChars >= 1)) {
    throw new RangeError(
      `Cannot split lines as 'maxLineChars' must be >= 1: current value is ${maxLineChars}`,
    );
  }
  let partial = "";
  const emitLong = (line: string, controller: TransformStreamDefaultController<string>) => {
    while (line.length > maxLineChars) {
      controller.enqueue(line.slice(0, maxLineChars));
      line = line.slice(maxLineChars);
    }
    return line;
  };
  return new TransformStream<string, string>({
    transform(chunk, controller) {
      const text = partial + chunk;
      let start = 0;
      let newline = text.indexOf("\n");
      while (newline !== -1) {
        let line = text.slice(start, newline);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        controller.enqueue(emitLong(line, controller));
        start = newline + 1;
        newline = text.indexOf("\n", start);
      }
      partial = emitLong(text.slice(start), controller);
    },
    flush(controller) {
      if (partial.length > 0) {
        controller.enqueue(partial.endsWith("\r") ? partial.slice(0, -1) : partial);
      }
      partial = "";
    },
  });
}

/** A fixed-capacity FIFO that drops its oldest items when full. */
export class RingBuffer<T> {
  /** Most items held. */
  readonly capacity: number;
  #items: (T | undefined)[];
  #start = 0;
  #size = 0;
  #dropped = 0;

  /** A buffer holding at most `capacity` items. */
  constructor(capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) {
      throw new RangeError(
        `Cannot create ring buffer as 'capacity' must be an integer >= 1: current value is ${capacity}`,
      );
    }
    this.capacity = capacity;
    this.#items = new Array<T | undefined>(capacity);
  }

  /** Items held now. */
  get size(): number {
    return this.#size;
  }

  /** Items dropped so far because the buffer was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends an item, dropping the oldest when full. */
  push(item: T): void {
    if (this.#size < this.capacity) {
      this.#items[(this.#start + this.#size) % this.capacity] = item;
      this.#size++;
      return;
    }
    this.#items[this.#start] = item;
    this.#start = (this.#start + 1) % this.capacity;
    this.#dropped++;
  }

  /** The items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#size; i++) {
      out.push(this.#items[(this.#start + i) % this.capacity] as T);
    }
    return out;
  }
}
