/**
 * The wire form of worker attributes, shared by both ends of the controller↔worker protocol:
 * plain values (strings, booleans, integers, other numbers) ↔ the proto `AttributeValue` map.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type AttributeValue, AttributeValueSchema } from "./gen/iris/v1/types_pb.ts";

/** A plain attribute value (what src/types.ts calls AttributeScalar). */
type Scalar = string | number | boolean;

/** Plain attributes → proto attribute map; each value keeps its kind. */
export function attributesToProto(
  attrs: Readonly<Record<string, Scalar>>,
): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [k, v] of Object.entries(attrs)) {
    out[k] = create(AttributeValueSchema, {
      kind: typeof v === "string"
        ? { case: "stringValue", value: v }
        : typeof v === "boolean"
        ? { case: "boolValue", value: v }
        : Number.isInteger(v)
        ? { case: "intValue", value: v }
        : { case: "floatValue", value: v },
    });
  }
  return out;
}

/** Proto attribute map → plain attributes (unset values are skipped). */
export function attributesFromProto(
  attrs: Readonly<Record<string, AttributeValue>>,
): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (v.kind.case !== undefined) out[k] = v.kind.value;
  }
  return out;
}
