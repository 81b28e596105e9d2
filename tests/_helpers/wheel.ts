/** Tests build their wheels like the smoke job does (src/smoke/wheel.ts). */
export { writeTinyWheel, zipStore } from "../../src/smoke/wheel.ts";
