// The params of a MALoRA mixture on module M, adapter a (io/peft/malora-moe.ts has the file form).
export function moeParamNames(module: string, adapter: string) {
  return {
    S: `${module}.lora_S.${adapter}.weight`,
    P: `${module}.lora_P.${adapter}.weight`,
    up: `${module}.lora_up.${adapter}.weight`,
    router: `${module}.lora_router.${adapter}.weight`,
  };
}

/** `<M>.lora_up.<a>.weight`: the param a mixture's site is recognised by. */
export const UP_NAME = /^(.*)\.lora_up\.([A-Za-z0-9_-]+)\.weight$/;
