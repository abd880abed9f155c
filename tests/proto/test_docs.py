"""The configuration reference lists every key the parser knows, with its
default, and the example config only uses real keys."""
import os
import re
import subprocess

from conftest import POSTERNCTL, ROOT


def parser_keys():
    src = open(os.path.join(ROOT, "src/config/config.c")).read()
    return dict(re.findall(r'\{\s*"([a-z0-9_]+)",\s*T_[A-Z_]+,\s*O\([a-z0-9_]+\),\s*"([^"]*)"', src))


def test_every_key_documented_with_its_default():
    keys = parser_keys()
    assert len(keys) > 30
    doc = open(os.path.join(ROOT, "docs/configuration.md")).read()
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| `([a-z0-9_]+)` \| ([^|]*) \|", doc, re.M)}
    assert sorted(rows) == sorted(keys), "docs/configuration.md and config.c differ"
    for k, default in keys.items():
        if default:
            assert f"`{default}`" in rows[k] or k in ("hostname",), (k, default, rows[k])


def test_example_config_is_valid(tmp_path):
    text = open(os.path.join(ROOT, "etc/postern.conf")).read()
    # The example names real certificate paths; drop them for the check.
    text = re.sub(r"^(tls_cert|tls_key|submissions_listen) .*$", "", text, flags=re.M)
    conf = tmp_path / "postern.conf"
    conf.write_text(text)
    r = subprocess.run([POSTERNCTL, "-c", str(conf), "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
