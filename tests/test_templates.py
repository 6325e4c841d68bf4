"""Notifier templates: DD-IX's file names and variables, and the load-time check that
turns an undefined variable in an operator's template into a config error."""

from __future__ import annotations

import json

import pytest
from notifyutil import arp_batch

from ixpect import config
from ixpect.events import Batch
from ixpect.notify.email import EmailNotifier
from ixpect.notify.render import NAMES, Templates, render

UPSTREAM_HTML = """\
<h1>{{name}} triggered in {{batch_count}} batches</h1>
{% for batch in batches %}
<tr><td>{{batch.size}}</td><td>{{batch.timestamp}}</td><td>{{batch.id}}</td><td><pre>{{batch.data}}</pre></td></tr>
{% endfor %}
"""

MAIL = {"smtp": {"host": "127.0.0.1"}, "from": "ixpect@ix.example"}


def load(tmp_path, notifiers: str = "", **files) -> dict:
    """Write `files` into tmp_path/templates and load a config using that directory."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "templates" / name.replace("__", ".")).write_text(text)
    path = tmp_path / "ixpect.conf.yaml"
    path.write_text(f"event:\n  templates_dir: templates\n{notifiers}")
    return config.load(path)


def html_part(templates_dir) -> str:
    notifier = EmailNotifier(MAIL, {"to": ["noc@ix.example"]}, Templates(str(templates_dir)))
    batch = arp_batch(count=4)
    msg = notifier.message([batch, arp_batch("192.0.2.2")])
    return batch, msg.get_body(("html",)).get_content()


def test_upstream_email_template_is_used_with_its_variables(tmp_path):
    cfg = load(tmp_path, email__html__j2=UPSTREAM_HTML)
    batch, html = html_part(cfg["event"]["templates_dir"])
    assert "<h1>ARP_NEIGHBOR_SPOOFED_STATIC triggered in 2 batches</h1>" in html
    data = json.dumps(batch.data).replace('"', "&#34;")  # printed whole, as JSON, HTML-escaped
    assert f"<tr><td>4</td><td>2025-10-25T21:00:13.123456Z</td><td>{batch.id}</td><td><pre>{data}</pre>" in html


def test_our_name_wins_over_the_j2_name(tmp_path):
    load(tmp_path, email__html="ours {{ events }}", email__html__j2="theirs")
    assert html_part(tmp_path / "templates")[1].startswith("ours 7")


def test_upstream_names_do_not_change_the_default_http_body():
    rows = json.loads(render(Templates().get("http.json"), [arp_batch()]))["batches"]
    assert set(rows[0]) == {"id", "type", "count", "first", "last", "data", "member", "member_claimed", "sample"}


@pytest.mark.parametrize("text, line, message", [
    ("{{name}} in {{batchcount}} batches", 1, "'batchcount' is undefined"),
    ("{% for b in batches %}\n{{ b.sizes }}\n{% endfor %}", 2, "'batch object' has no attribute 'sizes'"),
    # inside a branch the member-less sample skips, taken by the sample with a member
    ("{% for b in batches %}{% if b.member %}\n\n{{ b.member.asm }}{% endif %}{% endfor %}", 3,
     "'dict object' has no attribute 'asm'"),
])
def test_undefined_variable_is_a_config_error_with_file_and_line(tmp_path, text, line, message):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, email__html__j2=text)
    assert exc.value.errors == [
        f"{tmp_path}/ixpect.conf.yaml:2: event.templates_dir: {tmp_path}/templates/email.html.j2:{line}: {message}"]


def test_event_data_keys_are_not_checked(tmp_path):
    """Data keys differ per event type: asking for one another type lacks is fine."""
    load(tmp_path, summary__txt="{% for b in batches %}{{ b.data.ip4_addr }} {{ b.data.nonsense }}{% endfor %}")


def test_syntax_error_and_missing_include_are_config_errors(tmp_path):
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, slack__txt="{{ type", email__txt='{% include "footer.txt" %}')
    assert exc.value.errors == [
        f"{tmp_path}/ixpect.conf.yaml:2: event.templates_dir: {tmp_path}/templates/slack.txt:1: "
        "unexpected end of template, expected 'end of print statement'.",
        f"{tmp_path}/ixpect.conf.yaml:2: event.templates_dir: email.txt: template 'footer.txt' not found",
    ]


def test_http_channel_template_is_checked_where_it_is_configured(tmp_path):
    notifiers = ("  notifiers:\n    http:\n      channels:\n"
                 "        - url: http://127.0.0.1:9/hook\n          template: hook.j2\n")
    (tmp_path / "hook.j2").write_text('{"n": {{ batch_count }}, "x": {{ missing }}}')
    with pytest.raises(config.ConfigError) as exc:
        load(tmp_path, notifiers)
    assert exc.value.errors == [f"{tmp_path}/ixpect.conf.yaml:7: event.notifiers.http.channels[0].template: "
                                f"{tmp_path}/hook.j2:1: 'missing' is undefined"]
    (tmp_path / "hook.j2").write_text('{"n": {{ batch_count }}}')
    load(tmp_path, notifiers)


def test_builtin_templates_pass_the_check_and_render_without_a_member():
    """Every built-in template (a config without templates of its own does not check them)."""
    templates = Templates()
    for name in NAMES:
        assert "STP_PACKET_FOUND" in render(templates.get(name), [Batch("STP_PACKET_FOUND", {}, None, 0.0, 0.0)])


def test_missing_templates_dir_is_reported(tmp_path, caplog):
    Templates(str(tmp_path / "nowhere"))
    assert f"templates_dir {tmp_path}/nowhere is not a directory" in caplog.text
