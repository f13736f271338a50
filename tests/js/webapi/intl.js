// ECMA-402 (Intl) basics for "en"/"en-US": the expected strings are what deno 2.9.6 and Node
// (V8 with full ICU) print. The default time zone is UTC (the VM's; run Node with TZ=UTC).
// Where kvmjs lacks a feature it must throw a RangeError saying so, never print something
// else: `sameOrRefused` accepts V8's exact output or that RangeError (V8 must give the output).
import { assert, assertEq, assertJson, assertThrows } from "./helpers.js";

// 2024-01-05T14:03:09.045Z, a Friday.
const T = Date.UTC(2024, 0, 5, 14, 3, 9, 45);
const D = new Date(T);
const dtf = (o, l = "en") => new Intl.DateTimeFormat(l, { timeZone: "UTC", ...o });
// kvmjs's Deno shim says v8: "QuickJS-ng".
const isV8 = typeof globalThis.process?.versions?.v8 === "string" || /^\d/.test(globalThis.Deno?.version?.v8 ?? "");

// V8 prints U+0020 where CLDR has U+202F (before AM/PM) since V8 11.x; Node 20's V8 still
// prints U+202F, so only under Node is its output normalized.
const isNode = typeof globalThis.process?.versions?.node === "string";
const sp = (s) => (isNode ? s.replace(/\u202f/g, " ") : s);

function sameOrRefused(fn, expected) {
  let out;
  try { out = fn(); } catch (e) {
    if (!isV8 && e instanceof RangeError && /not supported by kvmjs/.test(e.message)) return;
    throw e;
  }
  assertJson(out, expected);
}

export const tests = [
  ["Intl: the namespace and its constructors", () => {
    assertEq(Object.prototype.toString.call(Intl), "[object Intl]");
    for (const n of ["Collator", "DateTimeFormat", "NumberFormat", "PluralRules"]) {
      assertEq(typeof Intl[n], "function", n);
      assertEq(Intl[n].length, 0, `${n}.length`);
      assertEq(Object.prototype.toString.call(new Intl[n]()), `[object Intl.${n}]`);
      assertEq(typeof Intl[n].supportedLocalesOf, "function");
    }
    assert(Intl.Collator() instanceof Intl.Collator, "Collator callable without new");
    assert(Intl.NumberFormat() instanceof Intl.NumberFormat, "NumberFormat callable without new");
    assertThrows(() => Intl.PluralRules(), TypeError);
    assertThrows(() => Intl.NumberFormat.prototype.resolvedOptions.call({}), TypeError);
    assertEq(String.prototype.localeCompare.length, 1);
  }],
  ["Intl.getCanonicalLocales and supportedLocalesOf", () => {
    assertJson(Intl.getCanonicalLocales(["EN-us", "zh-hant-tw", "en-US"]), ["en-US", "zh-Hant-TW"]);
    assertJson(Intl.getCanonicalLocales("iw"), ["he"]);
    assertJson(Intl.getCanonicalLocales(), []);
    assertJson(Intl.getCanonicalLocales("en-u-ca-gregory-nu-latn"), ["en-u-ca-gregory-nu-latn"]);
    assertThrows(() => Intl.getCanonicalLocales(["en_US"]), RangeError);
    assertThrows(() => Intl.getCanonicalLocales(""), RangeError);
    assertThrows(() => Intl.getCanonicalLocales([5]), TypeError);
    assertJson(Intl.Collator.supportedLocalesOf(["en", "fr", "xx"]), ["en", "fr"]);
    assertJson(Intl.NumberFormat.supportedLocalesOf("zh-Hant-TW"), ["zh-Hant-TW"]);
    assertJson(Intl.DateTimeFormat.supportedLocalesOf(["en-US", "de-DE", "tlh"]), ["en-US", "de-DE"]);
  }],
  ["Intl.Collator: order, options, resolvedOptions", () => {
    const words = ["b", "a", "B", "A", "ä", "10", "9"];
    assertJson([...words].sort(new Intl.Collator("en").compare), ["10", "9", "a", "A", "ä", "b", "B"]);
    assertJson([...words].sort(new Intl.Collator("en", { numeric: true, caseFirst: "upper" }).compare), ["9", "10", "A", "a", "ä", "B", "b"]);
    assertJson(["résumé", "resume", "Resume", "résume"].sort(new Intl.Collator("en").compare), ["resume", "Resume", "résume", "résumé"]);
    assertJson(["Z", "a", "z", "ä"].sort(new Intl.Collator("sv").compare), ["a", "z", "Z", "ä"]);
    assertJson(["a1", "a10", "a2"].sort(new Intl.Collator("en", { numeric: true }).compare), ["a1", "a2", "a10"]);
    assertEq(new Intl.Collator("en", { sensitivity: "base" }).compare("a", "Á"), 0);
    assertEq(new Intl.Collator("en", { sensitivity: "accent" }).compare("a", "A"), 0);
    assertEq(new Intl.Collator("en", { sensitivity: "case" }).compare("a", "á"), 0);
    assertEq(new Intl.Collator("en", { ignorePunctuation: true }).compare("a-b", "ab"), 0);
    const c = new Intl.Collator("en");
    assertEq(c.compare, c.compare, "compare is bound once");
    assertEq(c.compare("a", "b"), -1); assertEq(c.compare("b", "a"), 1); assertEq(c.compare("a", "a"), 0);
    assertJson(new Intl.Collator().resolvedOptions(),
      { locale: "en-US", usage: "sort", sensitivity: "variant", ignorePunctuation: false, collation: "default", numeric: false, caseFirst: "false" });
    assertJson(new Intl.Collator("en-u-kn-kf-upper").resolvedOptions(),
      { locale: "en-u-kf-upper-kn", usage: "sort", sensitivity: "variant", ignorePunctuation: false, collation: "default", numeric: true, caseFirst: "upper" });
    assertEq(new Intl.Collator("en-u-kn", { numeric: false }).resolvedOptions().numeric, false);
    assertEq(new Intl.Collator("xx").resolvedOptions().locale, "en-US");
    assertThrows(() => new Intl.Collator("en", { sensitivity: "bogus" }), RangeError);
  }],
  ["String.prototype.localeCompare uses the collator", () => {
    assertEq("a".localeCompare("B"), -1);
    assertEq("B".localeCompare("a"), 1);
    assertEq("a".localeCompare("a"), 0);
    assertEq("a".localeCompare("b", "en", { sensitivity: "base" }), -1);
    assertEq("ä".localeCompare("a", "de", { sensitivity: "base" }), 0);
    assertJson(["b", "A", "a", "B"].sort((x, y) => x.localeCompare(y)), ["a", "A", "b", "B"]);
    assertThrows(() => String.prototype.localeCompare.call(null, "a"), TypeError);
    assertEq("\ud800".localeCompare("a"), 1, "a lone surrogate compares");
  }],
  ["Intl.NumberFormat: decimal", () => {
    const f = (o, x, l = "en") => new Intl.NumberFormat(l, o).format(x);
    assertEq((1234567.891).toLocaleString(), "1,234,567.891");
    assertEq(f({}, 1234.5, "de"), "1.234,5");
    assertEq(f({}, 1234567.5, "fr"), "1\u202f234\u202f567,5");
    assertEq(f({ maximumFractionDigits: 0 }, 2.5), "3");
    assertEq(f({ maximumFractionDigits: 1 }, 1.25), "1.3");
    assertEq(f({ maximumFractionDigits: 2 }, 1.005), "1.01");
    assertEq(f({ minimumFractionDigits: 2 }, 1), "1.00");
    assertEq(f({ minimumIntegerDigits: 3 }, 7), "007");
    assertEq(f({ useGrouping: false }, 1234567), "1234567");
    assertEq(f({ useGrouping: "min2" }, 1234), "1234");
    assertEq(f({ maximumSignificantDigits: 2 }, 12345), "12,000");
    assertEq(f({ minimumSignificantDigits: 5 }, 1.5), "1.5000");
    assertEq(f({}, "12345678901234567890.123"), "12,345,678,901,234,567,890.123");
    assertEq(f({}, 1e-7), "0");
    assertEq(f({}, 1e21), "1,000,000,000,000,000,000,000");
    assertEq(f({}, 123456789012345680000), "123,456,789,012,345,680,000");
    assertEq(NaN.toLocaleString(), "NaN");
    assertEq((-Infinity).toLocaleString(), "-∞");
    assertEq((-0).toLocaleString(), "-0");
    assertEq(12345678901234567890n.toLocaleString(), "12,345,678,901,234,567,890");
    assertEq((5).toLocaleString("de-DE"), "5");
    assertThrows(() => new Intl.NumberFormat("en", { maximumFractionDigits: 101 }), RangeError);
    assertThrows(() => new Intl.NumberFormat("en", { minimumFractionDigits: 3, maximumFractionDigits: 1 }), RangeError);
    assertThrows(() => Number.prototype.toLocaleString.call("1"), TypeError);
  }],
  ["Intl.NumberFormat: signDisplay", () => {
    const f = (signDisplay, x) => new Intl.NumberFormat("en", { signDisplay }).format(x);
    assertEq(f("exceptZero", 0), "0"); assertEq(f("exceptZero", 1), "+1"); assertEq(f("exceptZero", -0.0001), "0");
    assertEq(f("never", -5), "5"); assertEq(f("always", 0), "+0"); assertEq(f("negative", -0), "0"); assertEq(f("negative", -1), "-1");
  }],
  ["Intl.NumberFormat: percent and currency", () => {
    const f = (o, x) => new Intl.NumberFormat("en", o).format(x);
    assertEq((0.256).toLocaleString("en", { style: "percent" }), "26%");
    assertEq(f({ style: "percent" }, -0.5), "-50%");
    assertEq(f({ style: "currency", currency: "USD" }, 1234.5), "$1,234.50");
    assertEq(f({ style: "currency", currency: "EUR" }, -1234.5), "-€1,234.50");
    assertEq(f({ style: "currency", currency: "JPY" }, 1234.5), "¥1,235");
    assertEq(f({ style: "currency", currency: "CHF" }, 1234.5), "CHF\u00a01,234.50");
    assertEq(f({ style: "currency", currency: "KWD" }, 1.5), "KWD\u00a01.500");
    assertEq(f({ style: "currency", currency: "CAD" }, -1.5), "-CA$1.50");
    assertEq(f({ style: "currency", currency: "CAD", currencyDisplay: "narrowSymbol" }, 1.5), "$1.50");
    assertEq(f({ style: "currency", currency: "CAD", currencyDisplay: "code" }, 1.5), "CAD\u00a01.50");
    assertEq(f({ style: "currency", currency: "USD", currencySign: "accounting" }, -1.5), "($1.50)");
    assertEq(f({ style: "currency", currency: "USD" }, NaN), "$NaN");
    assertEq(f({ style: "currency", currency: "USD" }, 0), "$0.00");
    assertEq(12345n.toLocaleString("en", { style: "currency", currency: "EUR" }), "€12,345.00");
    assertThrows(() => new Intl.NumberFormat("en", { style: "currency" }), TypeError);
    assertThrows(() => new Intl.NumberFormat("en", { style: "currency", currency: "US" }), RangeError);
  }],
  ["Intl.NumberFormat: formatToParts and resolvedOptions", () => {
    assertJson(new Intl.NumberFormat("en", { style: "currency", currency: "USD" }).formatToParts(-1234.5), [
      { type: "minusSign", value: "-" }, { type: "currency", value: "$" }, { type: "integer", value: "1" }, { type: "group", value: "," },
      { type: "integer", value: "234" }, { type: "decimal", value: "." }, { type: "fraction", value: "50" },
    ]);
    assertJson(new Intl.NumberFormat("en", { style: "percent", signDisplay: "always" }).formatToParts(0.5),
      [{ type: "plusSign", value: "+" }, { type: "integer", value: "50" }, { type: "percentSign", value: "%" }]);
    assertJson(new Intl.NumberFormat("en", { style: "currency", currency: "CHF" }).formatToParts(2), [
      { type: "currency", value: "CHF" }, { type: "literal", value: "\u00a0" }, { type: "integer", value: "2" },
      { type: "decimal", value: "." }, { type: "fraction", value: "00" },
    ]);
    const r = new Intl.NumberFormat().resolvedOptions();
    const want = { locale: "en-US", numberingSystem: "latn", style: "decimal", minimumIntegerDigits: 1, minimumFractionDigits: 0, maximumFractionDigits: 3, useGrouping: "auto", notation: "standard", signDisplay: "auto" };
    for (const [k, v] of Object.entries(want)) assertEq(r[k], v, k);
    const c = new Intl.NumberFormat("en", { style: "currency", currency: "usd" }).resolvedOptions();
    assertJson([c.locale, c.currency, c.currencyDisplay, c.currencySign, c.minimumFractionDigits, c.maximumFractionDigits], ["en", "USD", "symbol", "standard", 2, 2]);
    const s = new Intl.NumberFormat("en", { maximumSignificantDigits: 3 }).resolvedOptions();
    assertJson([s.minimumSignificantDigits, s.maximumSignificantDigits, "minimumFractionDigits" in s], [1, 3, false]);
    assertEq(new Intl.NumberFormat("xx").resolvedOptions().locale, "en-US");
    assertEq(new Intl.NumberFormat("de-CH").resolvedOptions().locale, "de-CH");
  }],
  ["Intl.NumberFormat: features kvmjs lacks are refused", () => {
    sameOrRefused(() => new Intl.NumberFormat("en", { notation: "compact" }).format(1234), "1.2K");
    sameOrRefused(() => new Intl.NumberFormat("en", { style: "unit", unit: "meter" }).format(1), "1 m");
    sameOrRefused(() => new Intl.NumberFormat("de", { style: "currency", currency: "EUR" }).format(1), "1,00\u00a0€");
    sameOrRefused(() => new Intl.NumberFormat("de", { style: "percent" }).format(0.5), "50\u00a0%");
  }],
  ["Intl.PluralRules: cardinal and ordinal", () => {
    const ord = new Intl.PluralRules("en", { type: "ordinal" });
    assertJson([0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112].map((n) => ord.select(n)),
      ["other", "one", "two", "few", "other", "other", "other", "other", "one", "two", "few", "one", "other", "other"]);
    const card = new Intl.PluralRules("en");
    assertJson([0, 1, 1.5, 2, "1"].map((n) => card.select(n)), ["other", "one", "other", "other", "one"]);
    assertEq(new Intl.PluralRules("en", { minimumFractionDigits: 1 }).select(1), "other");
    assertEq(new Intl.PluralRules("ru").select(3), "few");
    // ECMA-402 2024 fixed this order; Node 20's older V8 still has ICU's.
    assertJson(new Intl.PluralRules("ar").resolvedOptions().pluralCategories.sort(), ["few", "many", "one", "other", "two", "zero"]);
    const r = new Intl.PluralRules("en", { type: "ordinal" }).resolvedOptions();
    assertJson([r.locale, r.type, r.minimumIntegerDigits, r.minimumFractionDigits, r.maximumFractionDigits, r.pluralCategories.sort()],
      ["en", "ordinal", 1, 0, 3, ["few", "one", "other", "two"]]);
  }],
  ["Intl.DateTimeFormat: dateStyle and timeStyle", () => {
    assertEq(dtf({ dateStyle: "full", timeStyle: "full" }).format(D), "Friday, January 5, 2024 at 2:03:09 PM Coordinated Universal Time");
    assertEq(dtf({ dateStyle: "long", timeStyle: "long" }).format(D), "January 5, 2024 at 2:03:09 PM UTC");
    assertEq(dtf({ dateStyle: "medium", timeStyle: "medium" }).format(D), "Jan 5, 2024, 2:03:09 PM");
    assertEq(dtf({ dateStyle: "short", timeStyle: "short" }).format(D), "1/5/24, 2:03 PM");
    assertEq(dtf({ dateStyle: "full", timeStyle: "short" }).format(D), "Friday, January 5, 2024 at 2:03 PM");
    assertEq(dtf({ dateStyle: "short", timeStyle: "full" }).format(D), "1/5/24, 2:03:09 PM Coordinated Universal Time");
    assertEq(dtf({ timeStyle: "medium" }).format(D), "2:03:09 PM");
    assertEq(dtf({ dateStyle: "long" }).format(D), "January 5, 2024");
    assertEq(dtf({ dateStyle: "medium" }, "en-GB").format(D), "5 Jan 2024");
    assertEq(dtf({ dateStyle: "short" }, "en-GB").format(D), "05/01/2024");
    assertEq(dtf({ dateStyle: "medium" }, "de").format(D), "05.01.2024");
    assertEq(dtf({ dateStyle: "long", timeStyle: "long" }, "de").format(D), "5. Januar 2024 um 14:03:09 UTC");
    assertEq(dtf({ dateStyle: "full" }, "fr").format(D), "vendredi 5 janvier 2024");
    assertEq(dtf({ dateStyle: "long" }, "ja").format(D), "2024年1月5日");
    assertThrows(() => dtf({ dateStyle: "short", year: "numeric" }), TypeError);
  }],
  ["Intl.DateTimeFormat: component options", () => {
    const f = (o) => dtf(o).format(D);
    assertEq(new Intl.DateTimeFormat("en", { timeZone: "UTC" }).format(D), "1/5/2024");
    assertEq(f({ weekday: "long", year: "numeric", month: "long", day: "numeric" }), "Friday, January 5, 2024");
    assertEq(f({ month: "short", day: "numeric" }), "Jan 5");
    assertEq(f({ weekday: "short", month: "short", day: "numeric" }), "Fri, Jan 5");
    assertEq(f({ weekday: "short", year: "numeric", month: "numeric", day: "numeric" }), "Fri, 1/5/2024");
    assertEq(f({ year: "numeric", month: "2-digit", day: "2-digit" }), "01/05/2024");
    assertEq(f({ year: "2-digit", month: "2-digit", day: "2-digit" }), "01/05/24");
    assertEq(f({ year: "2-digit", month: "numeric", day: "numeric" }), "1/5/24");
    assertEq(f({ era: "short", year: "numeric", month: "numeric", day: "numeric" }), "1/5/2024 AD");
    assertEq(f({ weekday: "long" }), "Friday");
    assertEq(f({ year: "numeric" }), "2024");
    assertEq(f({ month: "long" }), "January");
    assertEq(f({ month: "short", year: "numeric" }), "Jan 2024");
    assertEq(f({ day: "numeric" }), "5");
    assertEq(f({ hour: "numeric" }), "2 PM");
    assertEq(f({ hour: "2-digit", minute: "2-digit" }), "02:03 PM");
    assertEq(f({ hour: "numeric", minute: "2-digit", hour12: false }), "14:03");
    assertEq(f({ hourCycle: "h23", hour: "numeric" }), "14");
    assertEq(f({ hour: "numeric", minute: "numeric", second: "numeric", fractionalSecondDigits: 3 }), "2:03:09.045 PM");
    assertEq(f({ hour: "numeric", minute: "numeric", timeZoneName: "long" }), "2:03 PM Coordinated Universal Time");
    assertEq(f({ month: "long", day: "numeric", year: "numeric", hour: "numeric", minute: "2-digit" }), "January 5, 2024 at 2:03 PM");
  }],
  ["Intl.DateTimeFormat: formatToParts, resolvedOptions, time zones", () => {
    assertJson(new Intl.DateTimeFormat("en").formatToParts(D), [
      { type: "month", value: "1" }, { type: "literal", value: "/" }, { type: "day", value: "5" }, { type: "literal", value: "/" }, { type: "year", value: "2024" },
    ]);
    const parts = dtf({ dateStyle: "full", timeStyle: "full" }).formatToParts(D);
    assertJson(parts.map((p) => p.type), ["weekday", "literal", "month", "literal", "day", "literal", "year", "literal", "hour", "literal", "minute", "literal", "second", "literal", "dayPeriod", "literal", "timeZoneName"]);
    assertEq(sp(parts.map((p) => p.value).join("")), "Friday, January 5, 2024 at 2:03:09 PM Coordinated Universal Time");
    assertJson(new Intl.DateTimeFormat().resolvedOptions(),
      { locale: "en-US", calendar: "gregory", numberingSystem: "latn", timeZone: "UTC", year: "numeric", month: "numeric", day: "numeric" });
    assertJson(new Intl.DateTimeFormat("en", { dateStyle: "short", timeStyle: "short" }).resolvedOptions(),
      { locale: "en", calendar: "gregory", numberingSystem: "latn", timeZone: "UTC", hourCycle: "h12", hour12: true, dateStyle: "short", timeStyle: "short" });
    assertJson(new Intl.DateTimeFormat("en", { hour: "numeric", minute: "numeric" }).resolvedOptions(),
      { locale: "en", calendar: "gregory", numberingSystem: "latn", timeZone: "UTC", hourCycle: "h12", hour12: true, hour: "numeric", minute: "2-digit" });
    assertJson(new Intl.DateTimeFormat("de", { hour: "numeric" }).resolvedOptions(),
      { locale: "de", calendar: "gregory", numberingSystem: "latn", timeZone: "UTC", hourCycle: "h23", hour12: false, hour: "2-digit" });
    assertEq(new Intl.DateTimeFormat("en", { timeZone: "Etc/UTC" }).resolvedOptions().timeZone, "UTC");
    assertThrows(() => new Intl.DateTimeFormat().format(NaN), RangeError);
    assertThrows(() => new Intl.DateTimeFormat("en", { timeZone: "Mars/Base" }), RangeError);
    sameOrRefused(() => new Intl.DateTimeFormat("en", { timeZone: "America/New_York", timeStyle: "long" }).format(0), "7:00:00 PM EST");
    sameOrRefused(() => dtf({ month: "narrow" }).format(D), "J");
  }],
  ["Date: toLocale*String and toString's zone name", () => {
    assertEq(D.toLocaleString(), "1/5/2024, 2:03:09 PM");
    assertEq(D.toLocaleDateString(), "1/5/2024");
    assertEq(D.toLocaleTimeString(), "2:03:09 PM");
    assertEq(D.toLocaleString("en-US", { timeZone: "UTC" }), "1/5/2024, 2:03:09 PM");
    assertEq(new Date(0).toLocaleDateString("en-US", { dateStyle: "medium" }), "Jan 1, 1970");
    assertEq(new Date(0).toLocaleTimeString("en-US", { timeStyle: "short" }), "12:00 AM");
    assertEq(new Date(0).toLocaleDateString("en-US", { month: "long" }), "January");
    assertEq(new Date(0).toLocaleTimeString("en-US", { hour: "numeric" }), "12 AM");
    assertEq(new Date(0).toLocaleString("en-US", { weekday: "long" }), "Thursday");
    assertEq(new Date(NaN).toLocaleString(), "Invalid Date");
    assertEq(D.toString(), "Fri Jan 05 2024 14:03:09 GMT+0000 (Coordinated Universal Time)");
    assertEq(D.toTimeString(), "14:03:09 GMT+0000 (Coordinated Universal Time)");
    assertEq(D.toDateString(), "Fri Jan 05 2024");
    assertEq(String(new Date(NaN)), "Invalid Date");
    assertEq(`${D}`, D.toString());
  }],
];
