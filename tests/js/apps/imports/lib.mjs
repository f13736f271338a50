export const greeting = "hello from lib.mjs";
