// Stubs for the prelude parts evaluated on first use (src/web/lazy/<group>/, see
// src/engine/lazy.rs): crypto.subtle/CryptoKey/SubtleCrypto, and Intl with the
// locale-sensitive built-ins. The first touch evaluates the group, which replaces these
// stubs with the real definitions; warm-up requests put a used group in the snapshot.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const loaded = new Set();
  const prepare = new Map(); // group -> what must happen right before it is evaluated
  const finish = new Map(); // group -> what must happen right after
  const load = (group) => {
    if (loaded.has(group)) return;
    loaded.add(group);
    prepare.get(group)?.();
    try {
      native.loadLazy(group, native, internal);
    } finally {
      finish.get(group)?.();
    }
  };
  // A global that loads its group when read; the group's own definition (a data property)
  // replaces it, and an app's assignment replaces it too.
  const lazyGlobal = (name, group) => {
    Object.defineProperty(globalThis, name, {
      get() {
        load(group);
        const d = Object.getOwnPropertyDescriptor(globalThis, name);
        return d !== undefined && "value" in d ? d.value : undefined;
      },
      set(value) {
        Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
      },
      configurable: true,
      enumerable: false,
    });
  };

  // ---- crypto ----
  internal.isCryptoKey = () => false; // no CryptoKey exists before the group is loaded
  internal.lazySubtle = () => {
    load("crypto");
    return internal.subtle;
  };
  lazyGlobal("CryptoKey", "crypto");
  lazyGlobal("SubtleCrypto", "crypto");

  // For the host's glue (src/runtime.js): groups the app's source names are loaded before
  // the snapshot (src/engine/lazy.rs scans the sources).
  globalThis.__kvmjsLazy = load;

  // ---- Intl ---- (only where the ICU natives exist: the Node reference keeps V8's Intl)
  if (typeof native.intlCollator !== "function") return;
  lazyGlobal("Intl", "intl");
  const methods = [
    [String.prototype, "localeCompare", 1],
    [Number.prototype, "toLocaleString", 0],
    [BigInt.prototype, "toLocaleString", 0],
    [Date.prototype, "toLocaleString", 0],
    [Date.prototype, "toLocaleDateString", 0],
    [Date.prototype, "toLocaleTimeString", 0],
  ];
  const zoned = ["toString", "toTimeString"];
  const define = (proto, name, value) =>
    Object.defineProperty(proto, name, { value, writable: true, configurable: true, enumerable: false });
  // [prototype, name, the engine's method, ours (a stub or the zone-name wrapper)]
  const installed = [];
  for (const [proto, name, length] of methods) {
    const stub = {
      [name](...args) {
        load("intl");
        return Reflect.apply(proto[name], this, args);
      },
    }[name];
    Object.defineProperty(stub, "length", { value: length, configurable: true });
    installed.push([proto, name, proto[name], stub]);
  }
  // Date#toString and #toTimeString end with the zone's name, as V8 prints it. The VM's
  // zone is always UTC, whose name needs no ICU data: logging a date does not load Intl
  // (the group, once loaded, names the zone from ICU, with the same result).
  const getTimezoneOffset = Date.prototype.getTimezoneOffset;
  for (const name of zoned) {
    const original = Date.prototype[name];
    const wrapper = {
      [name]() {
        const s = Reflect.apply(original, this, []);
        if (s === "Invalid Date" || Reflect.apply(getTimezoneOffset, this, []) !== 0 || s.endsWith(")")) return s;
        return `${s} (Coordinated Universal Time)`;
      },
    }[name];
    installed.push([Date.prototype, name, original, wrapper]);
  }
  for (const [proto, name, , ours] of installed) define(proto, name, ours);
  // The group wraps the engine's own methods: it must find those, not ours, however it is
  // first reached. A method the app replaced in the meantime stays the app's.
  let appMethods = [];
  prepare.set("intl", () => {
    appMethods = [];
    for (const [proto, name, original, ours] of installed) {
      if (proto[name] !== ours) appMethods.push([proto, name, proto[name]]);
      define(proto, name, original);
    }
  });
  finish.set("intl", () => {
    for (const [proto, name, value] of appMethods) define(proto, name, value);
  });
})();
