import { assertEquals } from "../_helpers/assert.ts";
import { utf8Length } from "../../src/controller/validate.ts";
import { rng } from "../_helpers/rng.ts";

Deno.test("utf8Length counts what TextEncoder writes, lone surrogates as U+FFFD", () => {
  const utf8 = new TextEncoder();
  const fixed = [
    "",
    "true",
    "é",
    "€uro",
    "😀",
    "a😀b",
    "\ud800",
    "\udc00x",
    "x\ud800",
    "\ud800\ud800\udc00",
    "\u07ff\u0800\uffff",
  ];
  for (const s of fixed) assertEquals(utf8Length(s), utf8.encode(s).length, JSON.stringify(s));
  // Random strings over the ranges where the byte count changes, surrogates included.
  const random = rng(20);
  const points = [0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xffff];
  for (let i = 0; i < 500; i++) {
    let s = "";
    const n = Math.floor(random() * 8);
    for (let j = 0; j < n; j++) {
      s += String.fromCharCode(points[Math.floor(random() * points.length)]!);
    }
    assertEquals(utf8Length(s), utf8.encode(s).length, JSON.stringify(s));
  }
});
