// A syntax error on line 3, next to a secret-looking value.
export const key = "KVMJS_FAKE_SECRET_7f3a9c2e";
export const oops = ) KVMJS_FAKE_SECRET_7f3a9c2e;
