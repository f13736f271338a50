/*
 * The Varnish side of the kvmjs VMOD: VCL functions, one director (backend) per
 * program and one routing like `kvmjs serve`, and the fetch itself: the bereq's head
 * and body are handed to kvmjs in memory (kvmjs_vmod.h), the response's head becomes
 * the beresp and its body is pulled by a fetch processor as the program makes it.
 *
 * Everything about VMs, pools, limits and metrics is the kvmjs crate's; this file only
 * moves bytes between Varnish's structures and that ABI. It is compiled against the
 * installed Varnish headers (cache_varnishd.h for the backend connection and fetch
 * processors, as Varnish's own backends use them), hence "$ABI strict".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cache_varnishd.h includes cache.h, which may only be included once. */
#include "cache/cache_varnishd.h"
#include "cache/cache_director.h"
#include "cache/cache_filter.h"
#include "vcl.h"
#include "vsb.h"

#include "vcc_if.h"
#include "kvmjs_vmod.h"

struct kvmjs_vcl;

/* One backend: a program (target >= 0) or the router (KVMJS_FRONT). */
struct kvmjs_be {
	unsigned		magic;
#define KVMJS_BE_MAGIC		0x6b766d62
	struct kvmjs_vcl	*vcl;
	long			target;
	VCL_BACKEND		dir;
};

/* What one VCL loaded: the shared kvmjs and its backends (programs, then the router). */
struct kvmjs_vcl {
	unsigned		magic;
#define KVMJS_VCL_MAGIC		0x6b766d76
	struct kvmjs		*k;
	size_t			n;
	struct kvmjs_be		*be;
};

static enum vfp_status v_matchproto_(vfp_pull_f)
kvmjs_vfp_pull(struct vfp_ctx *vc, struct vfp_entry *vfe, void *p, ssize_t *lp)
{
	struct kvmjs_reply *reply;
	ssize_t n;

	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(vfe, VFP_ENTRY_MAGIC);
	AN(lp);
	reply = vfe->priv1;
	AN(reply);
	if (*lp <= 0) {
		*lp = 0;
		return (VFP_OK);
	}
	n = kvmjs_reply_read(reply, p, (size_t)*lp);
	if (n < 0) {
		*lp = 0;
		return (VFP_Error(vc, "kvmjs: %s", kvmjs_reply_reason(reply)));
	}
	*lp = n;
	return (n == 0 ? VFP_END : VFP_OK);
}

static const struct vfp kvmjs_vfp = {
	.name = "kvmjs",
	.pull = kvmjs_vfp_pull,
};

struct kvmjs_feed {
	struct kvmjs_req	*req;
	size_t			limit;
	int			over;
};

static int v_matchproto_(objiterate_f)
kvmjs_feed_body(void *priv, unsigned flush, const void *ptr, ssize_t len)
{
	struct kvmjs_feed *f = priv;

	(void)flush;
	if (len <= 0)
		return (0);
	if (!kvmjs_req_body(f->req, ptr, (size_t)len, f->limit)) {
		/* Over the program's max_request_body: kvmjs answers 413. */
		f->over = 1;
		return (-1);
	}
	return (0);
}

/* The bereq as a kvmjs request, its body included; NULL when the body could not be
 * read (logged). */
static struct kvmjs_req *
kvmjs_bereq(VRT_CTX, const struct kvmjs_be *be, struct busyobj *bo)
{
	const struct http *hp = bo->bereq;
	struct kvmjs_feed f;
	struct kvmjs_req *req;
	ssize_t r = 0;
	unsigned u;

	CHECK_OBJ_NOTNULL(hp, HTTP_MAGIC);
	req = kvmjs_req_new(be->vcl->k, be->target,
	    hp->hd[HTTP_HDR_METHOD].b, Tlen(hp->hd[HTTP_HDR_METHOD]),
	    hp->hd[HTTP_HDR_URL].b, Tlen(hp->hd[HTTP_HDR_URL]));
	AN(req);
	for (u = HTTP_HDR_FIRST; u < hp->nhd; u++) {
		if (hp->hd[u].b == NULL)
			continue;
		kvmjs_req_header(req, hp->hd[u].b, Tlen(hp->hd[u]));
	}
	f.req = req;
	f.limit = kvmjs_req_body_limit(be->vcl->k, req);
	f.over = 0;
	/* As Varnish's own backends send it: the cached body (std.cache_req_body), else
	 * the client's, read straight through. */
	if (bo->bereq_body != NULL)
		r = ObjIterate(bo->wrk, bo->bereq_body, &f, kvmjs_feed_body, 0);
	else if (bo->req != NULL && bo->req->req_body_status != BS_NONE) {
		r = VRB_Iterate(bo->wrk, bo->vsl, bo->req, kvmjs_feed_body, &f);
		/* As V1F_SendReq: a body read straight from the client is gone, so a
		 * retry would send the request without it. */
		if (bo->req->req_body_status != BS_CACHED)
			bo->no_retry = "req.body not cached";
	}
	if (r < 0 && !f.over) {
		VSLb(ctx->vsl, SLT_FetchError,
		    "kvmjs: cannot read the request body (already consumed? "
		    "use std.cache_req_body() for retries)");
		kvmjs_req_free(req);
		return (NULL);
	}
	return (req);
}

static int v_matchproto_(vdi_gethdrs_f)
kvmjs_gethdrs(VRT_CTX, VCL_BACKEND dir)
{
	struct kvmjs_be *be;
	struct busyobj *bo;
	struct kvmjs_req *req;
	struct kvmjs_reply *reply;
	struct http_conn *htc;
	struct vfp_entry *vfe;
	const char *reason, *name, *value;
	size_t i, nlen, vlen;
	long long length;
	unsigned status;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(dir, DIRECTOR_MAGIC);
	CAST_OBJ_NOTNULL(be, dir->priv, KVMJS_BE_MAGIC);
	bo = ctx->bo;
	CHECK_OBJ_NOTNULL(bo, BUSYOBJ_MAGIC);

	req = kvmjs_bereq(ctx, be, bo);
	if (req == NULL)
		return (-1);
	reply = kvmjs_send(be->vcl->k, req);
	AN(reply);

	reason = WS_Printf(bo->ws, "%s", kvmjs_reply_reason(reply));
	http_PutResponse(bo->beresp, "HTTP/1.1", (uint16_t)kvmjs_reply_status(reply),
	    reason);
	for (i = 0; i < kvmjs_reply_headers(reply); i++) {
		kvmjs_reply_header(reply, i, &name, &nlen, &value, &vlen);
		http_PrintfHeader(bo->beresp, "%.*s: %.*s", (int)nlen, name,
		    (int)vlen, value);
	}

	length = kvmjs_reply_length(reply);
	status = kvmjs_reply_status(reply);
	/* As a backend's own: Varnish keeps it for HEAD and uses it to deliver a passed
	 * body with a length instead of chunked. Never on a response that has no body by
	 * definition (RFC 9110 8.6). */
	if (length >= 0 && status >= 200 && status != 204 && status != 304)
		http_PrintfHeader(bo->beresp, "Content-Length: %lld", length);

	htc = WS_Alloc(bo->ws, sizeof *htc);
	if (htc == NULL) {
		VSLb(ctx->vsl, SLT_FetchError, "kvmjs: out of workspace");
		kvmjs_reply_free(reply);
		return (-1);
	}
	INIT_OBJ(htc, HTTP_CONN_MAGIC);
	htc->doclose = SC_REM_CLOSE;
	if (length == 0 || http_method_eq(bo->bereq->hd[HTTP_HDR_METHOD].b, HEAD)) {
		htc->body_status = BS_NONE;
		htc->content_length = 0;
	} else if (length > 0) {
		htc->body_status = BS_LENGTH;
		htc->content_length = (ssize_t)length;
	} else {
		htc->body_status = BS_CHUNKED;
		htc->content_length = -1;
	}
	if (htc->body_status != BS_NONE) {
		vfe = VFP_Push(bo->vfc, &kvmjs_vfp);
		if (vfe == NULL) {
			/* bo->htc is not set yet: finish() will not run after a failed
			 * gethdrs, and a retry must find no connection left over. */
			VSLb(ctx->vsl, SLT_FetchError,
			    "kvmjs: cannot add the body processor (out of workspace)");
			kvmjs_reply_free(reply);
			return (-1);
		}
		vfe->priv1 = reply;
	}
	htc->priv = reply;
	bo->htc = htc;
	return (0);
}

static void v_matchproto_(vdi_finish_f)
kvmjs_finish(VRT_CTX, VCL_BACKEND dir)
{
	struct busyobj *bo;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(dir, DIRECTOR_MAGIC);
	bo = ctx->bo;
	CHECK_OBJ_NOTNULL(bo, BUSYOBJ_MAGIC);
	if (bo->htc != NULL) {
		if (bo->htc->priv != NULL)
			kvmjs_reply_free(bo->htc->priv);
		bo->htc->priv = NULL;
		bo->htc = NULL;
	}
}

static const struct vdi_methods kvmjs_methods[1] = {{
	.magic = VDI_METHODS_MAGIC,
	.type = "kvmjs",
	.gethdrs = kvmjs_gethdrs,
	.finish = kvmjs_finish,
}};

static void
kvmjs_vcl_free(VRT_CTX, void *p)
{
	struct kvmjs_vcl *v;
	size_t i;

	(void)ctx;
	CAST_OBJ_NOTNULL(v, p, KVMJS_VCL_MAGIC);
	/* Our reference only: a director another VMOD still holds (e.g. one added to a
	 * round-robin director) is retired when that holder lets go. */
	for (i = 0; i < v->n; i++)
		if (v->be[i].dir != NULL)
			VRT_Assign_Backend(&v->be[i].dir, NULL);
	free(v->be);
	if (v->k != NULL)
		kvmjs_release(v->k);
	FREE_OBJ(v);
}

static const struct vmod_priv_methods kvmjs_priv_methods[1] = {{
	.magic = VMOD_PRIV_METHODS_MAGIC,
	.type = "kvmjs",
	.fini = kvmjs_vcl_free,
}};

int v_matchproto_(vmod_event_f)
vmod_event(VRT_CTX, struct vmod_priv *priv, enum vcl_event_e e)
{
	(void)ctx;
	(void)priv;
	(void)e;
	return (0);
}

VCL_VOID
vmod_library(VRT_CTX, struct vmod_priv *priv, VCL_STRING config, VCL_STRING guest)
{
	struct kvmjs_vcl *v;
	char err[1024];
	size_t i, programs;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	AN(priv);
	if (ctx->method != VCL_MET_INIT) {
		VRT_fail(ctx, "kvmjs.library() can only be called in vcl_init");
		return;
	}
	if (priv->priv != NULL) {
		VRT_fail(ctx, "kvmjs.library() was already called in this VCL");
		return;
	}
	if (config == NULL || *config == '\0') {
		VRT_fail(ctx, "kvmjs.library(): the tinykvm.json path is empty "
		    "(with std.getenv(\"KVMJS_CONFIG\"): is KVMJS_CONFIG set?)");
		return;
	}
	ALLOC_OBJ(v, KVMJS_VCL_MAGIC);
	AN(v);
	priv->priv = v;
	priv->methods = kvmjs_priv_methods;
	v->k = kvmjs_load(config, guest == NULL ? "" : guest, err, sizeof err);
	if (v->k == NULL) {
		VRT_fail(ctx, "kvmjs.library(\"%s\"): %s", config, err);
		return;
	}
	programs = kvmjs_programs(v->k);
	v->be = calloc(programs + 1, sizeof *v->be);
	AN(v->be);
	v->n = programs + 1;
	for (i = 0; i < v->n; i++) {
		v->be[i].magic = KVMJS_BE_MAGIC;
		v->be[i].vcl = v;
		v->be[i].target = i < programs ? (long)i : KVMJS_FRONT;
		if (i < programs)
			v->be[i].dir = VRT_AddDirector(ctx, kvmjs_methods,
			    &v->be[i], "kvmjs.%s", kvmjs_program_name(v->k, i));
		else
			v->be[i].dir = VRT_AddDirector(ctx, kvmjs_methods,
			    &v->be[i], "kvmjs");
		if (v->be[i].dir == NULL) {
			VRT_fail(ctx, "kvmjs.library(): cannot add a backend");
			return;
		}
	}
}

static struct kvmjs_vcl *
kvmjs_loaded(VRT_CTX, const struct vmod_priv *priv, const char *fn)
{
	struct kvmjs_vcl *v;

	if (priv == NULL || priv->priv == NULL) {
		VRT_fail(ctx, "kvmjs.%s(): call kvmjs.library() in vcl_init first", fn);
		return (NULL);
	}
	CAST_OBJ_NOTNULL(v, priv->priv, KVMJS_VCL_MAGIC);
	if (v->k == NULL || v->be == NULL) {
		VRT_fail(ctx, "kvmjs.%s(): kvmjs.library() failed", fn);
		return (NULL);
	}
	return (v);
}

static const struct kvmjs_be *
kvmjs_find(const struct kvmjs_vcl *v, const char *name)
{
	long i;

	/* A hash lookup: VCL names a program on every request. */
	i = kvmjs_program_index(v->k, name);
	if (i < 0 || (size_t)i + 1 >= v->n)
		return (NULL);
	return (&v->be[i]);
}

VCL_BACKEND
vmod_program(VRT_CTX, struct vmod_priv *priv, VCL_STRING name)
{
	const struct kvmjs_vcl *v;
	const struct kvmjs_be *be;
	struct vsb *names;
	size_t i;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	v = kvmjs_loaded(ctx, priv, "program");
	if (v == NULL)
		return (NULL);
	be = kvmjs_find(v, name);
	if (be != NULL)
		return (be->dir);
	names = VSB_new_auto();
	AN(names);
	for (i = 0; i + 1 < v->n; i++)
		VSB_printf(names, "%s%s", i ? ", " : "", kvmjs_program_name(v->k, i));
	AZ(VSB_finish(names));
	VRT_fail(ctx, "kvmjs.program(\"%s\"): no such program (there are: %s)",
	    name == NULL ? "" : name, VSB_data(names));
	VSB_destroy(&names);
	return (NULL);
}

VCL_BOOL
vmod_has_program(VRT_CTX, struct vmod_priv *priv, VCL_STRING name)
{
	const struct kvmjs_vcl *v;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	v = kvmjs_loaded(ctx, priv, "has_program");
	return (v != NULL && kvmjs_find(v, name) != NULL);
}

VCL_BACKEND
vmod_backend(VRT_CTX, struct vmod_priv *priv)
{
	const struct kvmjs_vcl *v;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	v = kvmjs_loaded(ctx, priv, "backend");
	if (v == NULL)
		return (NULL);
	return (v->be[v->n - 1].dir);
}
