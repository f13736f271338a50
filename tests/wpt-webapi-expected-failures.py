#!/usr/bin/env python3
# Regenerates tests/wpt-webapi-expected-failures.txt from a run of each engine:
#   WPT_WEBAPI_OUT=/tmp/kvmjs.json cargo test --test wpt_webapi
#   tests/wpt-webapi-deno.sh --out /tmp/deno.json
#   tests/wpt-webapi-expected-failures.py /tmp/kvmjs.json /tmp/deno.json > tests/wpt-webapi-expected-failures.txt
# Reasons come from the failure message (RULES) or the file (FILE); check new ones by hand.
import json,re,sys
k=json.load(open(sys.argv[1])); dn=json.load(open(sys.argv[2]))
def esc(n):
    out=''
    for c in n:
        if c=='\\': out+='\\\\'
        elif c=='\t': out+='\\t'
        elif c=='\n': out+='\\n'
        elif c=='\r': out+='\\r'
        elif c=='*': out+='\\*'
        elif ord(c)<0x20 or 0x7f<=ord(c)<0xa0: out+='\\u{%x}'%ord(c)
        else: out+=c
    return out
deno={}
for r in dn:
    for t in r['tests']: deno[(r['file'],t['name'])]=t['status']
FILE={
 'console/console-is-a-namespace.any.js':'console\'s [[Prototype]] is not an empty object (the guest puts its methods there)',
 'console/console-log-large-array.any.js':'console.log of a large array runs the guest out of memory',
 'dom/abort/event.any.js':'abort event has isTrusted false (events the platform fires are not trusted)',
 'dom/events/Event-isTrusted.any.js':'Event has no own isTrusted property',
 'dom/events/EventTarget-removeEventListener.any.js':'global scope is not an EventTarget (no removeEventListener on self)',
 'hr-time/basic.any.js':'performance is not an EventTarget',
 'html/webappapis/microtask-queuing/queue-microtask-exceptions.any.js':'global scope is not an EventTarget (no "error" event for an exception in a microtask)',
 'fetch/api/headers/headers-no-cors.any.js':'no "no-cors" request-headers guard',
 'fetch/api/headers/header-setcookie.any.js':'Set-Cookie not filtered by the "response" guard',
 'fetch/api/body/mime-type.any.js':'Response.clone() does not keep the extracted MIME type',
 'fetch/api/response/response-clone.any.js':'Response.clone() shares chunks instead of teeing them with structured clone',
 'fetch/api/response/response-stream-disturbed-5.any.js':'consuming a body without touching .body does not disturb a later body stream',
 'fetch/api/response/response-stream-with-broken-then.any.js':'body reading goes through a patched Object.prototype.then',
 'html/webappapis/structured-clone/structured-clone.any.js':'structuredClone: no resizable/length-tracking ArrayBuffers, no transfer checks (detached, OOB, non-transferable)',
 'html/webappapis/timers/evil-spec-example.any.js':'setTimeout with a string handler (no eval of strings)',
 'streams/readable-streams/async-iterator.any.js':'ReadableStream async iterator: return() details',
 'streams/readable-streams/constructor.any.js':'ReadableStream constructor converts its arguments in the wrong order',
 'streams/readable-streams/general.any.js':'ReadableStream(null) does not throw',
 'streams/readable-streams/patched-global.any.js':'tee()/pipeTo() use the patchable Promise.prototype.then',
 'streams/readable-streams/templated.any.js':'no pipeThrough',
 'url/urlsearchparams-constructor.any.js':'DOMException.prototype is not branded (no brand check) / no FormData',
 'webidl/ecmascript-binding/es-exceptions/DOMException-custom-bindings.any.js':'DOMException inherits from Error and its properties are not enumerable',
 'encoding/streams/backpressure.any.js':'no TextDecoderStream/TextEncoderStream (self[name] is undefined)',
 'encoding/streams/decode-utf8.any.js':'no SharedArrayBuffer (common/sab.js makes it with WebAssembly.Memory) and no TextDecoderStream',
 'fetch/api/headers/headers-record.any.js':'Headers(record): proxy trap order and Symbol keys differ from WebIDL record conversion',
 'FileAPI/blob/Blob-constructor.any.js':'Blob constructor iterates blobParts twice / no MessageChannel',
}
RULES=[
 (r'WritableStream is not defined','no WritableStream'),
 (r'TransformStream is not defined|new TransformStream','no TransformStream'),
 (r'TextDecoderStream','no TextDecoderStream'),
 (r'TextEncoderStream','no TextEncoderStream'),
 (r'FormData is not defined|formData\(\) is not supported','no FormData'),
 (r'BYOB readers are not supported|ReadableByteStreamController is not defined|byobRequest|respondWithNewView|\'(respond|view)\' of undefined|autoAllocateChunkSize','no byte streams (BYOB readers, byobRequest, autoAllocateChunkSize)'),
 (r"encoding label provided \('(utf-16|UTF-16|csunicode|iso-10646-ucs-2|ucs-2|unicode|unicodefeff|unicodefffe|utf-16be|utf-16le)",'TextDecoder: no UTF-16'),
 (r'encoding label provided','TextDecoder: no legacy encodings'),
 (r'Unterminated utf-16le|fatal: true','TextDecoder: no UTF-16 and no legacy encodings (fatal mode)'),
 (r'XMLHttpRequest is not defined','no XMLHttpRequest (not a Workers API)'),
 (r'MessageChannel is not defined','no MessageChannel'),
 (r'WebAssembly is not defined','no WebAssembly'),
 (r"invalid URL",'relative URL: a shell global has no base URL'),
 (r"'bind' of undefined|pipeThrough",'no pipeThrough'),
]
lines=[]
counts={}
for r in k:
    f=r['file']
    tests=[t for t in r['tests'] if t['status']!='NEEDS_SERVER']
    fails=[t for t in tests if t['status']!='PASS']
    def reason(msg,name=''):
        msg=msg or ''
        if 'SharedArrayBuffer' in name and re.search(r'not a function',msg): return 'no SharedArrayBuffer (common/sab.js makes it with WebAssembly.Memory)'
        if msg.strip().endswith('not a function') or 'not a function"' in msg:
            if f in FILE: return FILE[f]
        for pat,rs in RULES:
            if re.search(pat,msg): return rs
        if f in FILE: return FILE[f]
        if f.startswith('streams/readable-byte-streams/'): return 'byte streams incomplete'
        return 'fails: '+re.sub(r'\s+',' ',msg)[:100]
    if r['harness']['status']!='OK':
        m=r['harness']['message'] or ''
        rs=reason(m) if m else FILE.get(f,'harness '+r['harness']['status'])
        lines.append((f+' | [harness]', rs+' ('+re.sub(r'\s+',' ',m)[:80]+')'))
    if len(fails)>=3 and len(fails)==len(tests):
        rs=sorted({reason(t['message'],t['name']) for t in fails})
        dfail=sum(1 for t in fails if deno.get((f,t['name']))!='PASS')
        extra=f'; all {len(fails)} subtests' + (f'; deno fails {dfail}' if dfail else '')
        lines.append((f+' | *', '; '.join(rs)+extra))
        continue
    for t in fails:
        rs=reason(t['message'],t['name'])
        ds=deno.get((f,t['name']))
        if ds and ds!='PASS': rs+=' (deno fails it too)'
        elif ds is None: rs+=' (deno does not run it)'
        lines.append((f+' | '+esc(t['name']), rs))
print('# WPT Web API subtests kvmjs (QuickJS) fails, one per line: `file | subtest<TAB>reason`.')
print('# tests/wpt_webapi.rs fails on any failure not listed here and on any listed one that passes.')
print('# `file | [harness]`: the file\'s harness status is not OK (load error, timeout). A `*` in an')
print('# entry matches any text (`file | *`: every subtest of the file fails; a literal star is `\\*`);')
print('# every subtest a pattern matches must fail. A reason starting with FLAKY allows either result.')
print('# Names escape `\\`, tabs, newlines, control characters and `*`. Generated from a run on')
print('# 2026-12-02 (reasons from the failure messages; "deno fails it too": deno 2.9.6 with the')
print('# same harness, tests/wpt-webapi-deno.sh).')
print()
for key,rs in lines: print(key+'\t'+rs)
