"""The configuration reference lists every key the parser knows, with its
default."""
import os
import re

from conftest import ROOT


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


# The example config itself (its keys, its comments, that check passes and
# posternd starts from it): test_check.py.


def test_readme_warns_listeners_default_to_every_interface():
    """README names the real defaults of the two listeners that are on
    when unset, and shows the loopback-only form for a first try."""
    keys = parser_keys()
    readme = open(os.path.join(ROOT, "README.md")).read()
    for k in ("smtp_listen", "submission_listen"):
        assert keys[k].startswith("0.0.0.0:")
        assert f"`{keys[k]}`" in readme, (k, keys[k])
        assert re.search(rf"^{k} = 127\.0\.0\.1:\d+$", readme, re.M), k


def test_limits_documented_as_they_apply():
    """max_sessions caps each protocol on its own (core.c counts per
    service: test_limits.test_sessions_total_per_protocol); the DNS
    lookups' threads are sized at start while the limit reloads."""
    doc = open(os.path.join(ROOT, "docs/configuration.md")).read()
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| `([a-z0-9_]+)` \| [^|]* \| (.*) \|$", doc, re.M)}
    assert "POP3" in rows["max_sessions"] and "separately" in rows["max_sessions"]
    assert "restart" in rows["smtp_dns_lookups"], rows["smtp_dns_lookups"]
