import assert from "node:assert/strict";
import { checkAttribute, isSafeUrl, UnsafeAttributeError } from "../../src/dashboard/app/safe.ts";

Deno.test("isSafeUrl() allows relative and http(s) URLs only", () => {
  for (
    const ok of [
      "#/job/x",
      "/app.css",
      "page?x=1",
      "http://10.0.0.1:10001/",
      "https://x.y",
      "mailto:a@b",
      "//host/x",
    ]
  ) {
    assert.equal(isSafeUrl(ok), true, ok);
  }
  for (
    const bad of [
      "javascript:alert(1)",
      "JavaScript:alert(1)",
      " javascript:x",
      "java\tscript:x",
      "java\nscript:x",
      "\u0000javascript:x",
      "data:text/html,<b>",
      "vbscript:x",
      "file:///etc/passwd",
    ]
  ) {
    assert.equal(isSafeUrl(bad), false, JSON.stringify(bad));
  }
});

Deno.test("checkAttribute() rejects handlers, inline styles, srcdoc and unsafe URLs", () => {
  assert.equal(checkAttribute("class", "badge"), "badge");
  assert.equal(checkAttribute("colspan", 3), "3");
  assert.equal(checkAttribute("checked", true), "");
  assert.equal(checkAttribute("data-job-id", "/a/<b>"), "/a/<b>");
  assert.equal(checkAttribute("href", "#/job/%2Fa"), "#/job/%2Fa");
  for (
    const [name, value] of [
      ["onclick", "alert(1)"],
      ["OnError", "x"],
      ["onmouseover", ""],
      ["style", "color:red"],
      ["srcdoc", "<script>"],
      ["href", "javascript:alert(1)"],
      ["src", "data:image/svg+xml,<svg onload=alert(1)>"],
      ["formaction", "javascript:x"],
      ["x onclick", "y"],
      ["", "y"],
    ] as const
  ) {
    assert.throws(() => checkAttribute(name, value), UnsafeAttributeError, `${name}=${value}`);
  }
});
