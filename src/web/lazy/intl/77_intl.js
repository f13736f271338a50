// ECMA-402 (Intl) basics on ICU4X (src/engine/intl): Intl.getCanonicalLocales, Collator,
// NumberFormat, PluralRules, DateTimeFormat, and the locale-sensitive methods built on them
// (String#localeCompare, Number/BigInt#toLocaleString, Date#toLocale*String), plus the zone
// name V8 prints at the end of Date#toString. Option processing follows ECMA-402 here; ICU4X
// formatters are built when an Intl object is constructed, never at boot. What kvmjs cannot
// do throws a RangeError that says so rather than formatting something else.
// Evaluated on first use as a function of the prelude's private objects (src/engine/lazy.rs).
((native, internal) => {
  "use strict";
  // Under the Node reference harness there are no ICU natives: V8's own Intl stays.
  if (typeof native.intlCollator !== "function") return;

  const DEFAULT_LOCALE = "en-US";
  const slots = new WeakMap();
  const slot = (o, kind, method) => {
    const s = typeof o === "object" && o !== null ? slots.get(o) : undefined;
    if (s === undefined || s.kind !== kind) {
      throw new TypeError(`Method Intl.${kind}.prototype.${method} called on incompatible receiver ${typeof o === "object" && o !== null ? "#<Object>" : String(o)}`);
    }
    return s;
  };

  // ---------------- locales ----------------
  const canonicalCache = new Map();
  function canonicalize(tag) {
    let c = canonicalCache.get(tag);
    if (c === undefined) {
      c = native.intlCanonicalize(tag);
      if (canonicalCache.size < 256) canonicalCache.set(tag, c);
    }
    return c;
  }

  // CanonicalizeLocaleList
  function canonicalizeLocaleList(locales) {
    if (locales === undefined) return [];
    const seen = [];
    const O = typeof locales === "string" ? [locales] : Object(locales);
    const len = Math.min(Math.max(Math.trunc(Number(O.length)) || 0, 0), Number.MAX_SAFE_INTEGER);
    for (let k = 0; k < len; k++) {
      if (!(k in O)) continue;
      const v = O[k];
      if (typeof v !== "string" && (typeof v !== "object" || v === null)) {
        throw new TypeError(`Language ID should be string or object.`);
      }
      const tag = canonicalize(String(v));
      if (!seen.includes(tag)) seen.push(tag);
    }
    return seen;
  }

  // A tag split into its base (without any -u- extension) and its Unicode keywords.
  function splitExtension(tag) {
    const m = /-u((?:-[0-9a-z]{2,8})+)/i.exec(tag);
    if (!m) return { base: tag, keywords: new Map() };
    // Another singleton ends the -u- extension.
    let ext = m[1];
    const other = /-[0-9a-wyz]-/i.exec(ext + "-");
    if (other && other.index < ext.length) ext = ext.slice(0, other.index);
    const base = tag.slice(0, m.index) + tag.slice(m.index + 2 + ext.length);
    const keywords = new Map();
    let key = null;
    for (const sub of ext.slice(1).split("-")) {
      if (sub.length === 2) { key = sub.toLowerCase(); if (!keywords.has(key)) keywords.set(key, ""); } else if (key !== null && keywords.get(key) === "") keywords.set(key, sub.toLowerCase());
      else if (key !== null) keywords.set(key, keywords.get(key) + "-" + sub.toLowerCase());
    }
    return { base, keywords };
  }

  const supportedCache = new Map();
  function isSupported(tag) {
    let s = supportedCache.get(tag);
    if (s === undefined) { s = native.intlSupported(tag); if (supportedCache.size < 256) supportedCache.set(tag, s); }
    return s;
  }

  // BestAvailableLocale
  function bestAvailable(base) {
    let candidate = base;
    for (;;) {
      if (isSupported(candidate)) return candidate;
      let pos = candidate.lastIndexOf("-");
      if (pos < 0) return undefined;
      if (pos >= 2 && candidate[pos - 2] === "-") pos -= 2;
      candidate = candidate.slice(0, pos);
    }
  }

  // LookupMatcher (also serves "best fit").
  function lookupMatcher(requested) {
    for (const tag of requested) {
      const { base, keywords } = splitExtension(tag);
      const found = bestAvailable(base);
      if (found !== undefined) return { locale: found, keywords };
    }
    return { locale: DEFAULT_LOCALE, keywords: new Map() };
  }

  function getOption(options, name, values, fallback) {
    let v = options[name];
    if (v === undefined) return fallback;
    v = String(v);
    if (values !== undefined && !values.includes(v)) {
      throw new RangeError(`Value ${v} out of range for Intl options property ${name}`);
    }
    return v;
  }
  function getBoolOption(options, name, fallback) {
    const v = options[name];
    return v === undefined ? fallback : Boolean(v);
  }
  function getNumberOption(options, name, min, max, fallback) {
    return defaultNumberOption(options[name], min, max, fallback, name);
  }
  function defaultNumberOption(v, min, max, fallback, name) {
    if (v === undefined) return fallback;
    v = Number(v);
    if (Number.isNaN(v) || v < min || v > max) throw new RangeError(`${name} value is out of range.`);
    return Math.floor(v);
  }
  const coerceOptions = (options) => (options === undefined ? Object.create(null) : Object(options));
  function getOptionsObject(options) {
    if (options === undefined) return Object.create(null);
    if (typeof options === "object" && options !== null) return options;
    throw new TypeError("Options must be an object");
  }

  function supportedLocalesOf(locales, options) {
    const requested = canonicalizeLocaleList(locales);
    getOption(coerceOptions(options), "localeMatcher", ["lookup", "best fit"], "best fit");
    return requested.filter((tag) => bestAvailable(splitExtension(tag).base) !== undefined);
  }

  // A resolved locale plus the keywords kept (ECMA-402 ResolveLocale's extension handling):
  // `pairs` are [key, value] in order; an empty value is the canonical "true".
  function withKeywords(locale, pairs) {
    const kept = pairs.filter(([, v]) => v !== undefined);
    if (kept.length === 0) return locale;
    return locale + "-u-" + kept.map(([k, v]) => (v === "" || v === "true" ? k : `${k}-${v}`)).join("-");
  }

  function defineClass(name, ctor, proto, statics) {
    Object.defineProperty(ctor, "name", { value: name });
    Object.defineProperty(ctor, "length", { value: 0 });
    for (const [k, v] of Object.entries(statics)) Object.defineProperty(ctor, k, { value: v, writable: true, configurable: true });
    const descs = Object.getOwnPropertyDescriptors(proto);
    for (const d of Object.values(descs)) d.enumerable = false;
    Object.defineProperties(ctor.prototype, descs);
    Object.defineProperty(ctor.prototype, Symbol.toStringTag, { value: `Intl.${name}`, configurable: true });
  }

  // ---------------- Collator ----------------
  function Collator(locales, options) {
    if (new.target === undefined) return new Collator(locales, options);
    const requested = canonicalizeLocaleList(locales);
    options = coerceOptions(options);
    const usage = getOption(options, "usage", ["sort", "search"], "sort");
    if (usage === "search") throw new RangeError("Intl.Collator: usage \"search\" is not supported by kvmjs (ICU4X has no search collation)");
    getOption(options, "localeMatcher", ["lookup", "best fit"], "best fit");
    const collation = getOption(options, "collation", undefined, undefined);
    if (collation !== undefined && !/^[0-9a-z]{3,8}(-[0-9a-z]{3,8})*$/i.test(collation)) throw new RangeError(`Invalid collation : ${collation}`);
    let numeric = getBoolOption(options, "numeric", undefined);
    let caseFirst = getOption(options, "caseFirst", ["upper", "lower", "false"], undefined);
    const sensitivityOpt = getOption(options, "sensitivity", ["base", "accent", "case", "variant"], undefined);
    const ignorePunctuation = getBoolOption(options, "ignorePunctuation", false);
    const { locale, keywords } = lookupMatcher(requested);
    // Extension keywords count only when the option does not say otherwise.
    let kn, kf;
    if (keywords.has("kn") && ["", "true", "false"].includes(keywords.get("kn"))) {
      const v = keywords.get("kn") !== "false";
      if (numeric === undefined || numeric === v) { kn = keywords.get("kn") === "false" ? "false" : ""; numeric = v; }
    }
    if (keywords.has("kf") && ["upper", "lower", "false"].includes(keywords.get("kf"))) {
      const v = keywords.get("kf");
      if (caseFirst === undefined || caseFirst === v) { kf = v; caseFirst = v; }
    }
    numeric = numeric === true;
    caseFirst = caseFirst ?? "false";
    const sensitivity = sensitivityOpt ?? "variant";
    const icuTag = withKeywords(locale, [["kf", caseFirst === "false" ? undefined : caseFirst], ["kn", numeric ? "" : undefined]]);
    const compare = native.intlCollator(icuTag, sensitivity, ignorePunctuation);
    slots.set(this, {
      kind: "Collator", compare, bound: undefined,
      resolved: { locale: withKeywords(locale, [["kf", kf], ["kn", kn]]), usage, sensitivity, ignorePunctuation, collation: "default", numeric, caseFirst },
    });
  }
  defineClass("Collator", Collator, {
    get compare() {
      const s = slot(this, "Collator", "compare");
      if (s.bound === undefined) {
        const f = s.compare;
        // ICU4X compares a lone surrogate as U+FFFD; the native side takes UTF-8.
        const wf = (v) => (v.isWellFormed() ? v : v.toWellFormed());
        s.bound = (x, y) => f(wf(String(x)), wf(String(y)));
      }
      return s.bound;
    },
    resolvedOptions() { return { ...slot(this, "Collator", "resolvedOptions").resolved }; },
  }, { supportedLocalesOf(locales, options = undefined) { return supportedLocalesOf(locales, options); } });

  // ---------------- numbers ----------------
  // CLDR's currency fraction digits (supplemental currencyData) where they are not 2.
  const CURRENCY_DIGITS = {
    AFN: 0, ALL: 0, BHD: 3, BIF: 0, BYR: 0, CLF: 4, CLP: 0, DJF: 0, GNF: 0, IQD: 0, IRR: 0, ISK: 0,
    ITL: 0, JOD: 3, JPY: 0, KMF: 0, KPW: 0, KRW: 0, KWD: 3, LAK: 0, LBP: 0, LUF: 0, LYD: 3, MGA: 0,
    MGF: 0, MMK: 0, MRO: 0, OMR: 3, PYG: 0, RSD: 0, RWF: 0, SLE: 2, SLL: 0, SOS: 0, STD: 0, SYP: 0,
    TMM: 0, TND: 3, TRL: 0, UGX: 0, UYI: 0, UYW: 4, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0, YER: 0,
    ZMK: 0, ZWD: 0,
  };
  // CLDR's English currency symbols (en.xml) that differ from the ISO code.
  const EN_SYMBOLS = {
    AUD: "A$", BRL: "R$", CAD: "CA$", CNY: "CN¥", EUR: "€", GBP: "£", HKD: "HK$", ILS: "₪", INR: "₹",
    JPY: "¥", KRW: "₩", MXN: "MX$", NZD: "NZ$", PHP: "₱", TWD: "NT$", USD: "$", VND: "₫", XAF: "FCFA",
    XCD: "EC$", XOF: "F\u202fCFA", XPF: "CFPF",
  };
  const EN_NARROW = {
    AUD: "$", CAD: "$", CNY: "¥", HKD: "$", MXN: "$", NZD: "$", TWD: "$", RUB: "₽", UAH: "₴", TRY: "₺",
    NGN: "₦", THB: "฿", KZT: "₸", GEL: "₾", PLN: "zł", SEK: "kr", NOK: "kr", DKK: "kr", ARS: "$",
    CLP: "$", COP: "$", SGD: "$", ZAR: "R", CZK: "Kč", HUF: "Ft", BDT: "৳", LKR: "Rs", PKR: "Rs",
  };
  const isEnglish = (locale) => /^en(-|$)/.test(locale);
  // The English patterns kvmjs knows are those of "en"; en-* locales with other currency
  // symbols or patterns (en-GB says "US$", en-IN groups by two) are refused for currency.
  const enCurrencyLocale = (locale) => locale === "en" || locale === "en-US";

  // ToIntlMathematicalValue as a decimal string for the native side, or a special value.
  function toDecimal(x) {
    if (typeof x === "bigint") return { str: x.toString() };
    if (typeof x === "string") {
      const t = x.trim();
      if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return { str: t.replace(/^\+/, "").replace(/^(-?)\./, "$10.") };
      x = Number(t === "" ? 0 : t);
    } else {
      x = Number(x);
    }
    if (Number.isNaN(x)) return { nan: true };
    if (!Number.isFinite(x)) return { infinity: true, negative: x < 0 };
    return { str: Object.is(x, -0) ? "-0" : String(x) };
  }
  const times100 = (s) => {
    const i = s.search(/e/i);
    return i < 0 ? `${s}e2` : `${s.slice(0, i)}e${Number(s.slice(i + 1)) + 2}`;
  };

  // SetNumberFormatDigitOptions
  function digitOptions(options, mnfdDefault, mxfdDefault) {
    const mnid = getNumberOption(options, "minimumIntegerDigits", 1, 21, 1);
    const mnfd = options.minimumFractionDigits;
    const mxfd = options.maximumFractionDigits;
    const mnsd = options.minimumSignificantDigits;
    const mxsd = options.maximumSignificantDigits;
    const roundingIncrement = getNumberOption(options, "roundingIncrement", 1, 5000, 1);
    if (roundingIncrement !== 1) throw new RangeError("Intl.NumberFormat: roundingIncrement other than 1 is not supported by kvmjs");
    const roundingMode = getOption(options, "roundingMode", ["ceil", "floor", "expand", "trunc", "halfCeil", "halfFloor", "halfExpand", "halfTrunc", "halfEven"], "halfExpand");
    if (roundingMode !== "halfExpand") throw new RangeError(`Intl.NumberFormat: roundingMode "${roundingMode}" is not supported by kvmjs (only halfExpand)`);
    const roundingPriority = getOption(options, "roundingPriority", ["auto", "morePrecision", "lessPrecision"], "auto");
    if (roundingPriority !== "auto") throw new RangeError(`Intl.NumberFormat: roundingPriority "${roundingPriority}" is not supported by kvmjs`);
    const trailingZeroDisplay = getOption(options, "trailingZeroDisplay", ["auto", "stripIfInteger"], "auto");
    const d = { minimumIntegerDigits: mnid, roundingIncrement, roundingMode, roundingPriority, trailingZeroDisplay };
    const hasSd = mnsd !== undefined || mxsd !== undefined;
    const hasFd = mnfd !== undefined || mxfd !== undefined;
    if (hasSd) {
      d.minimumSignificantDigits = defaultNumberOption(mnsd, 1, 21, 1, "minimumSignificantDigits");
      d.maximumSignificantDigits = defaultNumberOption(mxsd, d.minimumSignificantDigits, 21, 21, "maximumSignificantDigits");
    } else if (hasFd) {
      let lo = defaultNumberOption(mnfd, 0, 100, undefined, "minimumFractionDigits");
      let hi = defaultNumberOption(mxfd, 0, 100, undefined, "maximumFractionDigits");
      if (lo === undefined) lo = Math.min(mnfdDefault, hi);
      else if (hi === undefined) hi = Math.max(mxfdDefault, lo);
      else if (lo > hi) throw new RangeError("maximumFractionDigits value is out of range.");
      d.minimumFractionDigits = lo; d.maximumFractionDigits = hi;
    } else {
      d.minimumFractionDigits = mnfdDefault; d.maximumFractionDigits = mxfdDefault;
    }
    return d;
  }
  const digitArray = (d) => [d.minimumIntegerDigits, d.minimumFractionDigits ?? 0, d.maximumFractionDigits ?? 0, d.minimumSignificantDigits ?? 0, d.maximumSignificantDigits ?? 0];
  const pairsToParts = (flat) => {
    const out = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ type: flat[i], value: flat[i + 1] });
    return out;
  };

  function NumberFormat(locales, options) {
    if (new.target === undefined) return new NumberFormat(locales, options);
    const requested = canonicalizeLocaleList(locales);
    options = coerceOptions(options);
    getOption(options, "localeMatcher", ["lookup", "best fit"], "best fit");
    const nuOpt = getOption(options, "numberingSystem", undefined, undefined);
    if (nuOpt !== undefined && !/^[0-9a-z]{3,8}(-[0-9a-z]{3,8})*$/i.test(nuOpt)) throw new RangeError(`Invalid numberingSystem : ${nuOpt}`);
    const { locale, keywords } = lookupMatcher(requested);
    const nu = nuOpt ?? keywords.get("nu");
    if (nu !== undefined && nu !== "latn") throw new RangeError(`Intl.NumberFormat: numberingSystem "${nu}" is not supported by kvmjs (only latn)`);
    const style = getOption(options, "style", ["decimal", "percent", "currency", "unit"], "decimal");
    let currency = getOption(options, "currency", undefined, undefined);
    if (currency !== undefined && !/^[a-z]{3}$/i.test(currency)) throw new RangeError(`Invalid currency code : ${currency}`);
    const currencyDisplay = getOption(options, "currencyDisplay", ["code", "symbol", "narrowSymbol", "name"], "symbol");
    const currencySign = getOption(options, "currencySign", ["standard", "accounting"], "standard");
    const unit = getOption(options, "unit", undefined, undefined);
    getOption(options, "unitDisplay", ["short", "narrow", "long"], "short");
    if (style === "currency" && currency === undefined) throw new TypeError("Currency code is required with currency style.");
    if (style === "unit") {
      if (unit === undefined) throw new TypeError("Unit is required with unit style.");
      throw new RangeError("Intl.NumberFormat: style \"unit\" is not supported by kvmjs");
    }
    const notation = getOption(options, "notation", ["standard", "scientific", "engineering", "compact"], "standard");
    if (notation !== "standard") throw new RangeError(`Intl.NumberFormat: notation "${notation}" is not supported by kvmjs`);
    let cDigits = 2;
    if (style === "currency") {
      currency = currency.toUpperCase();
      cDigits = CURRENCY_DIGITS[currency] ?? 2;
      if (currencyDisplay === "name") throw new RangeError("Intl.NumberFormat: currencyDisplay \"name\" is not supported by kvmjs");
      if (!enCurrencyLocale(locale)) throw new RangeError(`Intl.NumberFormat: style "currency" for ${locale} is not supported by kvmjs (it has the currency patterns of en and en-US only)`);
    }
    if (style === "percent" && !isEnglish(locale)) throw new RangeError(`Intl.NumberFormat: style "percent" for ${locale} is not supported by kvmjs (it has the percent pattern of en only)`);
    const [mnfdDefault, mxfdDefault] = style === "currency" ? [cDigits, cDigits] : style === "percent" ? [0, 0] : [0, 3];
    const digits = digitOptions(options, mnfdDefault, mxfdDefault);
    if (digits.trailingZeroDisplay !== "auto") throw new RangeError("Intl.NumberFormat: trailingZeroDisplay \"stripIfInteger\" is not supported by kvmjs");
    let useGrouping = options.useGrouping;
    if (useGrouping === undefined) useGrouping = "auto";
    else if (useGrouping === true || useGrouping === "true") useGrouping = "always";
    else if (useGrouping === false || useGrouping === "false" || useGrouping === null || useGrouping === "" || useGrouping === 0) useGrouping = false;
    else if (!["min2", "auto", "always"].includes(String(useGrouping))) throw new RangeError(`Value ${String(useGrouping)} out of range for Intl.NumberFormat options property useGrouping`);
    else useGrouping = String(useGrouping);
    const signDisplay = getOption(options, "signDisplay", ["auto", "never", "always", "exceptZero", "negative"], "auto");
    const format = native.intlNumberFormat(locale, useGrouping === false ? "false" : useGrouping);
    const resolved = { locale: withKeywords(locale, [["nu", keywords.get("nu") === "latn" && nuOpt === undefined ? "latn" : undefined]]), numberingSystem: "latn", style };
    if (style === "currency") Object.assign(resolved, { currency, currencyDisplay, currencySign });
    resolved.minimumIntegerDigits = digits.minimumIntegerDigits;
    if (digits.minimumFractionDigits !== undefined) { resolved.minimumFractionDigits = digits.minimumFractionDigits; resolved.maximumFractionDigits = digits.maximumFractionDigits; }
    if (digits.minimumSignificantDigits !== undefined) { resolved.minimumSignificantDigits = digits.minimumSignificantDigits; resolved.maximumSignificantDigits = digits.maximumSignificantDigits; }
    Object.assign(resolved, { useGrouping, notation, signDisplay, roundingIncrement: 1, roundingMode: "halfExpand", roundingPriority: "auto", trailingZeroDisplay: "auto" });
    slots.set(this, { kind: "NumberFormat", format, digits: digitArray(digits), resolved, bound: undefined });
  }

  // The ECMA-402 parts of x for a NumberFormat's slot.
  function numberParts(s, x) {
    const r = s.resolved;
    const v = toDecimal(x);
    let parts;
    let negative;
    if (v.nan || v.infinity) {
      negative = v.negative === true;
      const sign = r.signDisplay;
      const showMinus = negative && sign !== "never";
      const showPlus = !negative && !v.nan && (sign === "always" || sign === "exceptZero");
      const showPlusNaN = v.nan && sign === "always";
      parts = [];
      if (showMinus && !(r.style === "currency" && r.currencySign === "accounting")) parts.push({ type: "minusSign", value: "-" });
      if (showPlus || showPlusNaN) parts.push({ type: "plusSign", value: "+" });
      parts.push(v.nan ? { type: "nan", value: "NaN" } : { type: "infinity", value: "∞" });
      if (!showMinus) negative = false;
    } else {
      let str = v.str;
      if (r.style === "percent") str = times100(str);
      parts = pairsToParts(s.format(str, s.digits, r.signDisplay));
      negative = parts.some((p) => p.type === "minusSign");
    }
    if (r.style === "percent") {
      parts.push({ type: "percentSign", value: "%" });
    } else if (r.style === "currency") {
      const cur = r.currency;
      const symbol = r.currencyDisplay === "code" ? cur : (r.currencyDisplay === "narrowSymbol" ? (EN_NARROW[cur] ?? EN_SYMBOLS[cur]) : EN_SYMBOLS[cur]) ?? cur;
      const signs = [];
      while (parts.length > 0 && (parts[0].type === "minusSign" || parts[0].type === "plusSign")) signs.push(parts.shift());
      // CLDR currency spacing: a symbol ending in a letter is kept apart from the digits.
      const spaced = /\p{L}$/u.test(symbol) ? [{ type: "literal", value: "\u00a0" }] : [];
      const body = [{ type: "currency", value: symbol }, ...spaced, ...parts];
      if (r.currencySign === "accounting" && negative) {
        parts = [{ type: "literal", value: "(" }, ...body, { type: "literal", value: ")" }];
      } else {
        parts = [...signs, ...body];
      }
    }
    return parts;
  }

  defineClass("NumberFormat", NumberFormat, {
    get format() {
      const s = slot(this, "NumberFormat", "format");
      if (s.bound === undefined) s.bound = (x) => numberParts(s, x).map((p) => p.value).join("");
      return s.bound;
    },
    formatToParts(x) { return numberParts(slot(this, "NumberFormat", "formatToParts"), x); },
    resolvedOptions() { return { ...slot(this, "NumberFormat", "resolvedOptions").resolved }; },
  }, { supportedLocalesOf(locales, options = undefined) { return supportedLocalesOf(locales, options); } });

  // ---------------- PluralRules ----------------
  function PluralRules(locales, options) {
    if (new.target === undefined) throw new TypeError("Constructor Intl.PluralRules requires 'new'");
    const requested = canonicalizeLocaleList(locales);
    options = coerceOptions(options);
    getOption(options, "localeMatcher", ["lookup", "best fit"], "best fit");
    const type = getOption(options, "type", ["cardinal", "ordinal"], "cardinal");
    const notation = getOption(options, "notation", ["standard", "scientific", "engineering", "compact"], "standard");
    if (notation !== "standard") throw new RangeError(`Intl.PluralRules: notation "${notation}" is not supported by kvmjs`);
    const digits = digitOptions(options, 0, 3);
    if (digits.trailingZeroDisplay !== "auto") throw new RangeError("Intl.PluralRules: trailingZeroDisplay \"stripIfInteger\" is not supported by kvmjs");
    const { locale } = lookupMatcher(requested);
    const [categories, select] = native.intlPluralRules(locale, type === "ordinal");
    const resolved = { locale, type, notation, minimumIntegerDigits: digits.minimumIntegerDigits };
    if (digits.minimumFractionDigits !== undefined) { resolved.minimumFractionDigits = digits.minimumFractionDigits; resolved.maximumFractionDigits = digits.maximumFractionDigits; }
    if (digits.minimumSignificantDigits !== undefined) { resolved.minimumSignificantDigits = digits.minimumSignificantDigits; resolved.maximumSignificantDigits = digits.maximumSignificantDigits; }
    Object.assign(resolved, { pluralCategories: categories, roundingIncrement: 1, roundingMode: "halfExpand", roundingPriority: "auto", trailingZeroDisplay: "auto" });
    slots.set(this, { kind: "PluralRules", select, digits: digitArray(digits), resolved });
  }
  defineClass("PluralRules", PluralRules, {
    select(n) {
      const s = slot(this, "PluralRules", "select");
      const v = toDecimal(Number(n));
      return v.str === undefined ? "other" : s.select(v.str, s.digits);
    },
    resolvedOptions() {
      const r = slot(this, "PluralRules", "resolvedOptions").resolved;
      return { ...r, pluralCategories: [...r.pluralCategories] };
    },
  }, { supportedLocalesOf(locales, options = undefined) { return supportedLocalesOf(locales, options); } });

  // ---------------- DateTimeFormat ----------------
  // The IANA names of UTC (case-insensitive); every other zone is refused.
  const UTC_NAMES = ["utc", "etc/utc", "etc/uct", "uct", "etc/universal", "universal", "etc/zulu", "zulu", "gmt", "etc/gmt", "etc/gmt0", "gmt0", "etc/gmt+0", "etc/gmt-0", "gmt+0", "gmt-0", "etc/greenwich", "greenwich", "+00:00", "-00:00", "+0000", "+00"];
  const DATE_FIELDS = ["weekday", "era", "year", "month", "day"];
  const TIME_FIELDS = ["dayPeriod", "hour", "minute", "second", "fractionalSecondDigits"];
  const COMPONENTS = [
    ["weekday", ["narrow", "short", "long"]], ["era", ["narrow", "short", "long"]], ["year", ["2-digit", "numeric"]],
    ["month", ["2-digit", "numeric", "narrow", "short", "long"]], ["day", ["2-digit", "numeric"]],
    ["dayPeriod", ["narrow", "short", "long"]], ["hour", ["2-digit", "numeric"]], ["minute", ["2-digit", "numeric"]],
    ["second", ["2-digit", "numeric"]], ["fractionalSecondDigits", null],
    ["timeZoneName", ["short", "long", "shortOffset", "longOffset", "shortGeneric", "longGeneric"]],
  ];
  const unsupported = (what) => new RangeError(`Intl.DateTimeFormat: ${what} is not supported by kvmjs`);

  // The ICU4X skeleton for ECMA-402 components (null fields absent); see engine/intl/datetime.rs.
  function componentSpec(c) {
    if (c.dayPeriod !== undefined) throw unsupported("the dayPeriod option");
    if (c.weekday === "narrow" || c.month === "narrow") throw unsupported("narrow weekday/month names");
    const key = (c.year ? "Y" : "") + (c.month ? "M" : "") + (c.day ? "D" : "") + (c.weekday ? "E" : "");
    if (key !== "" && !["D", "MD", "YMD", "DE", "MDE", "YMDE", "E", "M", "YM", "Y"].includes(key)) throw unsupported(`the date fields ${key} together`);
    let length;
    if (c.month === "long") length = "long";
    else if (c.month === "short") length = "medium";
    else if (c.month !== undefined) length = "short";
    if (c.weekday !== undefined) {
      const w = c.weekday === "long" ? "long" : "medium";
      if (length === undefined) length = w;
      else if ((length === "long") !== (w === "long")) throw unsupported(`weekday "${c.weekday}" with month "${c.month}"`);
    }
    if (length === undefined) length = c.year !== undefined || c.day !== undefined ? "short" : "medium";
    let year = "";
    if (c.era !== undefined) {
      if (c.year === undefined) throw unsupported("era without year");
      year = "era";
    } else if (c.year === "numeric") year = "full";
    else if (c.year === "2-digit") {
      if (length !== "short") throw unsupported("a 2-digit year with month names");
      year = "auto";
    }
    let time = "";
    if (c.hour !== undefined) time = c.second !== undefined ? "second" : c.minute !== undefined ? "minute" : "hour";
    if ((c.minute !== undefined && c.hour === undefined) || (c.second !== undefined && c.minute === undefined)) throw unsupported("minute or second without the larger time fields");
    if (c.fractionalSecondDigits !== undefined) {
      if (c.second === undefined) throw unsupported("fractionalSecondDigits without second");
      time = String(c.fractionalSecondDigits);
    }
    // ICU4X pads month, day and hour together (column alignment) or not at all.
    const twoDigit = ["month", "day", "hour"].filter((k) => c[k] === "2-digit");
    const numeric = ["month", "day", "hour"].filter((k) => c[k] === "numeric");
    if (twoDigit.length > 0 && numeric.length > 0) throw unsupported("mixing 2-digit and numeric month/day/hour");
    // ICU4X's UTC offset and generic names ("GMT+0", "UTC") are not V8's ("GMT"), nor is
    // its glue for a date with a zone but no time.
    if (c.timeZoneName !== undefined && !["short", "long"].includes(c.timeZoneName)) throw unsupported(`timeZoneName "${c.timeZoneName}"`);
    if (c.timeZoneName !== undefined && time === "") throw unsupported("timeZoneName without a time");
    return [key, length, time, c.timeZoneName ?? "", year, twoDigit.length > 0 ? "column" : ""];
  }

  function styleSpec(dateStyle, timeStyle) {
    let date = "", length = "medium", time = "", zone = "";
    if (dateStyle !== undefined) {
      date = dateStyle === "full" ? "YMDE" : "YMD";
      length = dateStyle === "full" || dateStyle === "long" ? "long" : dateStyle;
    }
    if (timeStyle !== undefined) {
      time = timeStyle === "short" ? "minute" : "second";
      zone = timeStyle === "full" ? "long" : timeStyle === "long" ? "short" : "";
      if (dateStyle === undefined) length = timeStyle === "full" || timeStyle === "long" ? "long" : timeStyle;
    }
    return [date, length, time, zone, "", ""];
  }

  // ToDateTimeOptions' defaults: `required` is "date", "time" or "any"; `defaults` "date", "time" or "all".
  function createDateTimeFormat(locales, options, required, defaults) {
    const requested = canonicalizeLocaleList(locales);
    options = getOptionsObject(options);
    getOption(options, "localeMatcher", ["lookup", "best fit"], "best fit");
    const calendar = getOption(options, "calendar", undefined, undefined);
    if (calendar !== undefined && !/^[0-9a-z]{3,8}(-[0-9a-z]{3,8})*$/i.test(calendar)) throw new RangeError(`Invalid calendar : ${calendar}`);
    const nuOpt = getOption(options, "numberingSystem", undefined, undefined);
    if (nuOpt !== undefined && !/^[0-9a-z]{3,8}(-[0-9a-z]{3,8})*$/i.test(nuOpt)) throw new RangeError(`Invalid numberingSystem : ${nuOpt}`);
    const hour12 = getBoolOption(options, "hour12", undefined);
    let hourCycle = getOption(options, "hourCycle", ["h11", "h12", "h23", "h24"], undefined);
    if (hour12 !== undefined) hourCycle = null;
    let timeZone = options.timeZone;
    if (timeZone === undefined) timeZone = "UTC";
    else {
      timeZone = String(timeZone);
      if (!UTC_NAMES.includes(timeZone.toLowerCase())) {
        throw new RangeError(`Intl.DateTimeFormat: time zone "${timeZone}" is not supported by kvmjs (only UTC, the VM's zone)`);
      }
      timeZone = /^[+-]/.test(timeZone) ? "+00:00" : "UTC";
    }
    const c = {};
    for (const [name, values] of COMPONENTS) {
      c[name] = values === null ? getNumberOption(options, name, 1, 3, undefined) : getOption(options, name, values, undefined);
    }
    getOption(options, "formatMatcher", ["basic", "best fit"], "best fit");
    const dateStyle = getOption(options, "dateStyle", ["full", "long", "medium", "short"], undefined);
    const timeStyle = getOption(options, "timeStyle", ["full", "long", "medium", "short"], undefined);
    const { locale, keywords } = lookupMatcher(requested);
    const ca = calendar ?? keywords.get("ca");
    if (ca !== undefined && ca !== "gregory") throw new RangeError(`Intl.DateTimeFormat: calendar "${ca}" is not supported by kvmjs (only gregory)`);
    const nu = nuOpt ?? keywords.get("nu");
    if (nu !== undefined && nu !== "latn") throw new RangeError(`Intl.DateTimeFormat: numberingSystem "${nu}" is not supported by kvmjs (only latn)`);
    if (hourCycle === undefined && ["h11", "h12", "h23", "h24"].includes(keywords.get("hc"))) hourCycle = keywords.get("hc");
    let spec;
    if (dateStyle !== undefined || timeStyle !== undefined) {
      const set = COMPONENTS.filter(([n]) => c[n] !== undefined).map(([n]) => n);
      if (set.length > 0) throw new TypeError(`Can't set option ${set[0]} when ${dateStyle !== undefined ? "dateStyle" : "timeStyle"} is used`);
      if (required === "date" && dateStyle === undefined) throw new TypeError("Invalid option : timeStyle");
      if (required === "time" && timeStyle === undefined) throw new TypeError("Invalid option : dateStyle");
      spec = styleSpec(dateStyle, timeStyle);
    } else {
      let needDefaults = true;
      if ((required === "date" || required === "any") && DATE_FIELDS.some((k) => c[k] !== undefined)) needDefaults = false;
      if ((required === "time" || required === "any") && TIME_FIELDS.some((k) => c[k] !== undefined)) needDefaults = false;
      if (needDefaults && (defaults === "date" || defaults === "all")) { c.year = "numeric"; c.month = "numeric"; c.day = "numeric"; }
      if (needDefaults && (defaults === "time" || defaults === "all")) { c.hour = "numeric"; c.minute = "numeric"; c.second = "numeric"; }
      spec = componentSpec(c);
    }
    const hasHour = spec[2] !== "";
    // hour12 picks the locale's 12- or 24-hour cycle; kvmjs's 12-hour cycle is h12.
    let hc = hourCycle;
    if (hour12 !== undefined) hc = hour12 ? "h12" : "h23";
    if (hc === "h24" || hc === "h11") throw unsupported(`hourCycle "${hc}"`);
    const icuTag = withKeywords(locale, [["hc", hasHour ? hc ?? undefined : undefined]]);
    const format = native.intlDateTimeFormat(icuTag, spec);
    const resolved = { locale: withKeywords(locale, [["hc", hasHour && hourCycle && hourCycle === keywords.get("hc") && hour12 === undefined ? hourCycle : undefined]]), calendar: "gregory", numberingSystem: "latn", timeZone };
    if (hasHour) {
      // The locale's own cycle shows in its pattern: a day period means 12 hours.
      if (hc === undefined || hc === null) hc = pairsToParts(native.intlDateTimeFormat(locale, ["", "medium", "hour", "", "", ""])(0)).some((p) => p.type === "dayPeriod") ? "h12" : "h23";
      resolved.hourCycle = hc; resolved.hour12 = hc === "h12" || hc === "h11";
    }
    if (dateStyle !== undefined || timeStyle !== undefined) {
      if (dateStyle !== undefined) resolved.dateStyle = dateStyle;
      if (timeStyle !== undefined) resolved.timeStyle = timeStyle;
    } else {
      const out = { ...c };
      // The patterns print minutes and seconds with two digits, and V8 reports what they print.
      if (out.minute !== undefined && (out.hour !== undefined || out.second !== undefined)) out.minute = "2-digit";
      if (out.second !== undefined && out.minute !== undefined) out.second = "2-digit";
      if (out.hour !== undefined && out.hour === "numeric" && !resolved.hour12) {
        const parts = pairsToParts(format(0));
        const h = parts.find((p) => p.type === "hour");
        if (h && h.value.length === 2) out.hour = "2-digit";
      }
      for (const [name] of COMPONENTS) if (out[name] !== undefined) resolved[name] = out[name];
    }
    return { kind: "DateTimeFormat", format, resolved, bound: undefined };
  }

  // The time value of a DateTimeFormat#format argument (TimeClip'ed).
  function timeValue(date) {
    const x = date === undefined ? Date.now() : Number(date);
    if (!Number.isFinite(x) || Math.abs(x) > 8.64e15) throw new RangeError("Invalid time value");
    return Math.trunc(x) + 0;
  }
  // V8 prints U+0020 where CLDR has U+202F (before AM/PM) for compatibility, so do we.
  const dateParts = (s, t) => pairsToParts(s.format(t)).map((p) => (p.value.includes("\u202f") ? { type: p.type, value: p.value.replace(/\u202f/g, " ") } : p));

  function DateTimeFormat(locales, options) {
    if (new.target === undefined) return new DateTimeFormat(locales, options);
    slots.set(this, createDateTimeFormat(locales, options, "any", "date"));
  }
  defineClass("DateTimeFormat", DateTimeFormat, {
    get format() {
      const s = slot(this, "DateTimeFormat", "format");
      if (s.bound === undefined) s.bound = (date) => dateParts(s, timeValue(date)).map((p) => p.value).join("");
      return s.bound;
    },
    formatToParts(date) { return dateParts(slot(this, "DateTimeFormat", "formatToParts"), timeValue(date)); },
    resolvedOptions() { return { ...slot(this, "DateTimeFormat", "resolvedOptions").resolved }; },
  }, { supportedLocalesOf(locales, options = undefined) { return supportedLocalesOf(locales, options); } });

  // ---------------- Intl ----------------
  const Intl = {};
  Object.defineProperties(Intl, {
    getCanonicalLocales: { value: function getCanonicalLocales(locales) { return canonicalizeLocaleList(locales); }, writable: true, configurable: true },
    Collator: { value: Collator, writable: true, configurable: true },
    NumberFormat: { value: NumberFormat, writable: true, configurable: true },
    PluralRules: { value: PluralRules, writable: true, configurable: true },
    DateTimeFormat: { value: DateTimeFormat, writable: true, configurable: true },
    [Symbol.toStringTag]: { value: "Intl", configurable: true },
  });
  Object.defineProperty(globalThis, "Intl", { value: Intl, writable: true, configurable: true });

  // ---------------- locale-sensitive built-in methods ----------------
  // One lazily built instance for the common no-arguments call.
  const lazy = (make) => { let v; return () => (v ??= make()); };
  const defaultCollator = lazy(() => new Collator());
  const defaultNumberFormat = lazy(() => new NumberFormat());
  const defaultDates = {
    any: lazy(() => createDateTimeFormat(undefined, undefined, "any", "all")),
    date: lazy(() => createDateTimeFormat(undefined, undefined, "date", "date")),
    time: lazy(() => createDateTimeFormat(undefined, undefined, "time", "time")),
  };
  const replace = (proto, methods) => {
    for (const [name, fn] of Object.entries(methods)) Object.defineProperty(proto, name, { value: fn, writable: true, configurable: true, enumerable: false });
  };
  const thisTime = (d, name) => {
    try { return Date.prototype.getTime.call(d); } catch { throw new TypeError(`Date.prototype.${name} called on incompatible receiver`); }
  };
  const dateMethod = (name, required, defaults) => ({
    [name](locales = undefined, options = undefined) {
      const t = thisTime(this, name);
      if (Number.isNaN(t)) return "Invalid Date";
      const s = locales === undefined && options === undefined ? defaultDates[required]() : createDateTimeFormat(locales, options, required, defaults);
      return dateParts(s, t).map((p) => p.value).join("");
    },
  })[name];
  replace(Date.prototype, {
    toLocaleString: dateMethod("toLocaleString", "any", "all"),
    toLocaleDateString: dateMethod("toLocaleDateString", "date", "date"),
    toLocaleTimeString: dateMethod("toLocaleTimeString", "time", "time"),
  });
  replace(String.prototype, {
    localeCompare: {
      localeCompare(that, locales = undefined, options = undefined) {
        if (this === null || this === undefined) throw new TypeError("String.prototype.localeCompare called on null or undefined");
        const c = locales === undefined && options === undefined ? defaultCollator() : new Collator(locales, options);
        return c.compare(String(this), String(that));
      },
    }.localeCompare,
  });
  const thisNumber = (v, type, name) => {
    if (typeof v === type) return v;
    try { return (type === "number" ? Number : BigInt).prototype.valueOf.call(v); } catch { throw new TypeError(`${type === "number" ? "Number" : "BigInt"}.prototype.${name} requires that 'this' be a ${type === "number" ? "Number" : "BigInt"}`); }
  };
  const toLocaleStringOf = (type) => ({
    toLocaleString(locales = undefined, options = undefined) {
      const x = thisNumber(this, type, "toLocaleString");
      const nf = locales === undefined && options === undefined ? defaultNumberFormat() : new NumberFormat(locales, options);
      return nf.format(x);
    },
  }).toLocaleString;
  replace(Number.prototype, { toLocaleString: toLocaleStringOf("number") });
  replace(BigInt.prototype, { toLocaleString: toLocaleStringOf("bigint") });

  // Date#toString and #toTimeString end with the zone's name, as V8 prints it.
  const zoneName = lazy(() => {
    const s = createDateTimeFormat("en-US", { timeZoneName: "long", hour: "numeric" }, "any", "date");
    return pairsToParts(s.format(0)).find((p) => p.type === "timeZoneName").value;
  });
  const withZone = (name, original) => ({
    [name]() {
      const s = original.call(this);
      // The VM's zone is UTC; another offset would need a zone database kvmjs lacks.
      if (s === "Invalid Date" || Date.prototype.getTimezoneOffset.call(this) !== 0 || s.endsWith(")")) return s;
      return `${s} (${zoneName()})`;
    },
  })[name];
  replace(Date.prototype, {
    toString: withZone("toString", Date.prototype.toString),
    toTimeString: withZone("toTimeString", Date.prototype.toTimeString),
  });
});
