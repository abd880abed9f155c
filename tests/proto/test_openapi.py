"""docs/openapi.yaml against the code: every route of admin_api.c's
router (and /metrics) is documented and nothing else, which routes a
domain admin reaches, the enums the code writes (op names, queue
operations, counters, relay keys), and the replies of a running posternd
for every route: their status among the documented ones and their JSON
shape the documented schema (additionalProperties false, so a member the
code adds or drops fails here)."""
import json
import os
import re
import smtplib

import pytest
import yaml

from conftest import ROOT, Admin, wait_for

SPEC = os.path.join(ROOT, "docs/openapi.yaml")


def src(path):
    return open(os.path.join(ROOT, path)).read()


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load(open(SPEC))


def template(path):
    return re.sub(r"\{[^}]+\}", "{}", path)


def spec_routes(spec):
    return {(m, template(p)) for p, ops in spec["paths"].items()
            for m in ops if m in ("get", "post", "delete")}


def router_body():
    """admin_api()'s body, white space folded."""
    s = src("src/admin/admin_api.c")
    start = s.index("\nadmin_api(struct admin_server")
    return " ".join(s[start:].split())


def block_after(text, pos):
    """The text of the { ... } block starting at text[pos] == '{'."""
    depth = 0
    for i in range(pos, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[pos:i + 1]
    raise AssertionError("unbalanced block")


def code_routes():
    """(method, path template) for each branch of the router."""
    body = router_body()
    routes = set()
    pat = re.compile(r'strcmp\(r, "([a-z-]+)"\) == 0 && n == (\d)'
                     r'(?: && strcmp\(s\[4\], "([a-z]+)"\) == 0)?'
                     r' && (\(get \|\| post\)|get|post|del)\)( \{)?')
    for m in pat.finditer(body):
        res, n, lit, meth, brace = m.group(1), int(m.group(2)), m.group(3), m.group(4), m.group(5)
        methods = ["get", "post"] if meth.startswith("(") else [meth]
        fourth = [lit] if lit else ["{}"]
        if n == 5 and not lit and brace:
            inner = re.findall(r'strcmp\(s\[4\], "([a-z]+)"\) == 0',
                               block_after(body, m.end() - 1))
            fourth = inner or fourth
        for meth in methods:
            for f in fourth:
                segs = ["api", "v1", res] + ["{}"] * (n >= 4)
                segs += [f] * (n >= 5) + ["{}"] * (n >= 6)
                routes.add(("delete" if meth == "del" else meth, "/" + "/".join(segs)))
    assert len(routes) > 20, routes
    # /metrics is routed in admin.c, before the API.
    assert 'strcmp(path, "/metrics") == 0' in src("src/admin/admin.c")
    routes.add(("get", "/metrics"))
    return routes


def test_every_route_documented_and_nothing_else(spec):
    code, doc = code_routes(), spec_routes(spec)
    assert sorted(code - doc) == [], "in admin_api.c, not in docs/openapi.yaml"
    assert sorted(doc - code) == [], "in docs/openapi.yaml, not in admin_api.c"


def test_domain_admin_reach(spec):
    """x-domain-admin is true exactly for the resources the router lets
    a domain admin reach."""
    body = router_body()
    i = body.index("if (w->domain[0] != '\\0' && strcmp(r, ")
    allowed = set(re.findall(r'strcmp\(r, "([a-z-]+)"\) != 0', body[i:body.index("{", i)]))
    assert allowed == {"users", "aliases", "lists"}
    for path, ops in spec["paths"].items():
        for meth, op in ops.items():
            if path == "/metrics":
                # token_done serves it to a full admin's token only.
                assert op["x-domain-admin"] is False
                assert "403" in op["responses"]
                continue
            res = path.split("/")[3]
            assert op["x-domain-admin"] is (res in allowed), (meth, path)
            if res not in allowed:
                assert "403" in op["responses"], (meth, path)


def test_enums_match_the_code(spec):
    sc = spec["components"]["schemas"]
    ops = re.findall(r'\{AOP_[A-Z_]+, "([a-z-]+)"', src("src/admin/admin_ops.c"))
    assert len(ops) == 16 and sc["Done"]["properties"]["op"]["enum"] == ops
    pages = " ".join(src("src/admin/admin_pages.c").split())
    qcmd = pages[pages.index("admin_queue_cmd(struct admin_server"):]
    qops = re.findall(r'strcmp\(op, "([a-z]+)"\) != 0', qcmd[:600])
    assert qops == ["flush", "hold", "release", "delete"]
    assert sc["QueueDone"]["properties"]["op"]["enum"] == qops
    qpath = spec["paths"]["/api/v1/queue/{id}/{op}"]["post"]["parameters"]
    assert [p for p in qpath if p["name"] == "op"][0]["schema"]["enum"] == qops
    names = re.findall(r'\[STAT_[A-Z_]+\] = "([a-z_]+)"', src("src/lib/stats.c"))
    assert len(names) == 8 and sc["Counters"]["required"] == names
    assert sc["Hour"]["required"] == ["start"] + names
    states = re.search(r"state_names\[\] = \{([^}]*)\}", src("src/queue/queue_file.c")).group(1)
    rstate = sc["Queue"]["properties"]["messages"]["items"]["properties"]["recipients"]
    assert rstate["items"]["properties"]["state"]["enum"] == re.findall(r'"([a-z]+)"', states)
    known = re.search(r"known\[\] = \{([^}]*)\}", pages).group(1)
    assert sorted(sc["RelaySet"]["properties"]) == sorted(re.findall(r'"([a-z_]+)"', known))
    keys = re.search(r"relay_json_run.*?keys\[\] = \{([^}]*)\}", pages).group(1)
    assert sc["Relay"]["required"] == re.findall(r'"([a-z_]+)"', keys) + ["accept", "recipients"]
    table = pages[pages.index("} modes[] = {"):]
    modes = re.findall(r'\{"([a-z-]+)", "', table[:table.index("};")])
    assert sorted(sc["Relay"]["properties"]["relay"]["enum"]) == sorted(modes)


# ---- the replies of a running server ------------------------------------

def resolve(spec, node):
    while "$ref" in node:
        cur = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            cur = cur[part]
        node = cur
    return node


def check(spec, schema, value, where="$"):
    """The subset of OpenAPI 3.0's schema objects the file uses."""
    schema = resolve(spec, schema)
    if value is None:
        assert schema.get("nullable"), f"{where}: null where it may not be"
        return
    if "oneOf" in schema:
        ok = 0
        for alt in schema["oneOf"]:
            try:
                check(spec, alt, value, where)
                ok += 1
            except AssertionError:
                pass
        assert ok == 1, f"{where}: {value!r} matches {ok} of oneOf"
        return
    for part in schema.get("allOf", []):
        check(spec, part, value, where)
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} not an integer"
    elif t is not None:
        assert isinstance(value, types[t]), f"{where}: {value!r} not {t}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if t == "object":
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            assert k in value, f"{where}: {k} missing"
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{where}: undocumented {sorted(extra)}"
        for k, v in value.items():
            if k in props:
                check(spec, props[k], v, f"{where}.{k}")
    if t == "array":
        assert len(value) >= schema.get("minItems", 0), where
        assert len(value) <= schema.get("maxItems", len(value)), where
        for i, v in enumerate(value):
            check(spec, schema.get("items", {}), v, f"{where}[{i}]")


def test_check_can_fail(spec):
    """The checker refuses what it must (else the live test proves
    nothing)."""
    sc = spec["components"]["schemas"]
    good = {"ok": True, "op": "user-add", "object": "a@b"}
    check(spec, sc["Done"], good)
    for bad in ({**good, "extra": 1}, {"ok": True, "op": "user-add"},
                {**good, "op": "nope"}, {**good, "object": None}, {**good, "ok": "yes"}):
        with pytest.raises(AssertionError):
            check(spec, sc["Done"], bad)
    with pytest.raises(AssertionError):
        check(spec, sc["Stats"]["properties"]["hours"], [])


def find_op(spec, method, path):
    path = path.split("?", 1)[0]
    for p, ops in spec["paths"].items():
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"
        if re.match(rx, path) and method.lower() in ops:
            return ops[method.lower()]
    raise AssertionError(f"{method} {path}: not in docs/openapi.yaml")


class Caller:
    def __init__(self, spec, server):
        self.spec, self.a = spec, Admin(server)
        self.seen = set()

    def __call__(self, method, path, token, body=None, status=200):
        st, hd, data = self.a.request(
            method, path, body if body is None or isinstance(body, str) else json.dumps(body),
            {"Authorization": "Bearer " + token} if token else {}, cookie=False)
        assert st == status, (method, path, st, data)
        op = find_op(self.spec, method, path)
        resp = op["responses"].get(str(st))
        assert resp is not None, f"{method} {path}: {st} not documented"
        resp = resolve(self.spec, resp)
        ctype = hd.get("content-type", "").split(";")[0]
        assert ctype in resp["content"], f"{method} {path} {st}: {ctype} not documented"
        self.seen.add((method.lower(), template(next(
            p for p in self.spec["paths"] if self.spec["paths"][p].get(method.lower()) is op))))
        if ctype == "application/json":
            v = json.loads(data)
            check(self.spec, resp["content"][ctype]["schema"], v, f"{method} {path}")
            return v
        return data


def token(s, name="boss"):
    return s.ctl("admin", "token", name).stdout.strip().splitlines()[-1]


def test_replies_match_the_schemas(spec, admin_server):
    s = admin_server({"relayhost": "[127.0.0.1]:1", "queue_retry_min": "1h",
                      "queue_retry_max": "1h", "auth_max_failures": "50"})
    call, t, dt = Caller(spec, s), token(s), token(s, "dom")
    c = smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=20)
    c.sendmail("sender@example.net", ["fwd@example.test"], b"Subject: q\r\n\r\nbody\r\n")
    c.quit()

    call("GET", "/api/v1/users", None, status=401)
    call("GET", "/api/v1/users", "pst_00000000_" + "0" * 64, status=401)
    r = call("GET", "/api/v1/relay", t)
    assert r["relay"] == "none"
    r = call("POST", "/api/v1/relay", t, {"relay": "addresses", "relay_addresses": ["127.0.0.1"]})
    assert r["ok"] and r["relay"] == "addresses"
    call("POST", "/api/v1/relay", t, {"relay": "bogus"}, status=422)
    call("POST", "/api/v1/relay", t, {"nosuch": 1}, status=400)
    call("GET", "/api/v1/relay", dt, status=403)
    r = call("GET", "/api/v1/relay-check?client=203.0.113.9&from=x@example.net&to=alice@example.test", t)
    assert r["decision"] == "ACCEPT" and r["mailboxes"] == ["alice@example.test"]
    call("POST", "/api/v1/relay-check", t, {"client": "127.0.0.1", "to": "y@remote.example"})
    call("POST", "/api/v1/relay-check", t, {"client": "127.0.0.1"}, status=400)

    call("GET", "/api/v1/domains", t)
    call("POST", "/api/v1/domains", t, {"domain": "new.test"})
    call("POST", "/api/v1/domains", t, {"domain": "new.test"}, status=422)
    call("POST", "/api/v1/host-aliases", t, {"alias": "mx.new.test", "domain": "new.test"})
    assert {"alias": "mx.new.test", "domain": "new.test"} in call("GET", "/api/v1/domains", t)["host_aliases"]
    call("DELETE", "/api/v1/host-aliases/mx.new.test", t)
    call("DELETE", "/api/v1/domains/new.test", t)
    call("GET", "/api/v1/domains", dt, status=403)

    call("POST", "/api/v1/users", t, {"address": "newuser@example.test", "password": "pw-c"})
    call("POST", "/api/v1/users/newuser@example.test/password", t, {"password": "pw-d"})
    call("POST", "/api/v1/users/newuser@example.test/quota", t, {"bytes": "10M", "messages": 100})
    call("POST", "/api/v1/users/newuser@example.test/quota", t, {"bytes": "10X"}, status=422)
    call("POST", "/api/v1/users/newuser@example.test/disable", t, "")
    call("POST", "/api/v1/users/newuser@example.test/enable", t, "")
    call("POST", "/api/v1/users/newuser@example.test/disable", t, {})
    users = call("GET", "/api/v1/users?domain=example.test", t)["users"]
    nu = [u for u in users if u["address"] == "newuser@example.test"][0]
    assert nu["disabled"] and nu["quota_bytes"] == 10 << 20 and nu["last_login"] is None
    call("POST", "/api/v1/users/newuser@example.test/enable", t, {})
    call("POST", "/api/v1/users", dt, {"address": "x@other.test", "password": "p"}, status=403)
    call("GET", "/api/v1/users", dt)

    call("POST", "/api/v1/aliases", t, {"address": "newalias@example.test", "target": "newuser@example.test"})
    call("GET", "/api/v1/aliases", t)
    call("DELETE", "/api/v1/aliases/newalias@example.test?target=newuser@example.test", t)
    call("DELETE", "/api/v1/aliases/newalias@example.test", t, status=422)  # gone
    call("POST", "/api/v1/lists", t, {"address": "newlist@example.test"})
    call("POST", "/api/v1/lists/newlist@example.test/members", t, {"member": "bob@remote.example"})
    assert call("GET", "/api/v1/lists/newlist@example.test/members", t)["members"] == ["bob@remote.example"]
    call("GET", "/api/v1/lists/nodomain/members", t, status=400)
    call("GET", "/api/v1/lists", t)
    call("DELETE", "/api/v1/lists/newlist@example.test/members/bob@remote.example", t)
    call("DELETE", "/api/v1/lists/newlist@example.test", t)
    call("DELETE", "/api/v1/users/newuser@example.test", t)

    msgs = wait_for(lambda: call("GET", "/api/v1/queue", t)["messages"], what="queued")
    qid = msgs[0]["id"]
    call("GET", "/api/v1/queue/" + qid, t)
    call("GET", "/api/v1/queue/ffffffff", t, status=404)
    assert call("POST", f"/api/v1/queue/{qid}/hold", t, {})["done"] == 1
    assert call("POST", "/api/v1/queue/all/flush", t, {})["skipped_held"] == 1
    call("POST", f"/api/v1/queue/{qid}/delete", t, {}, status=400)
    call("POST", f"/api/v1/queue/{qid}/delete", t, {"confirm": True})
    call("POST", "/api/v1/queue/ffffffff/release", t, {}, status=404)
    st = call("GET", "/api/v1/stats", t)
    assert st["total"]["received"] == 1 and st["hours"][-1]["received"] == 1
    assert call("GET", "/api/v1/log?q=sender@example.net", t)["lines"]
    call("GET", "/api/v1/queue", dt, status=403)

    assert "postern_messages_received_total 1" in call("GET", "/metrics", t)
    call("GET", "/metrics", None, status=401)
    call("GET", "/metrics", dt, status=403)  # x-domain-admin: false

    # Every documented route was called (and so checked) at least once.
    assert sorted(spec_routes(spec) - call.seen) == []


def test_spec_is_well_formed(spec):
    """What OpenAPI 3.0 asks and a generator would trip on: unique
    operationIds, every {param} of a path declared as a path parameter,
    every $ref resolving, every operation with a 2xx reply."""
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in spec["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for meth, op in ops.items():
            declared = {resolve(spec, p)["name"] for p in op.get("parameters", [])
                        if resolve(spec, p)["in"] == "path"}
            assert declared == names, (meth, path, declared)
            assert any(c.startswith("2") for c in op["responses"]), (meth, path)

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(spec, node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(spec)
