import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from ixpect import config

REPO = Path(__file__).resolve().parent.parent
DDIX = Path(__file__).parent / "data" / "ddix.conf.yaml"
EXAMPLE = REPO / "examples" / "ixpect.conf.yaml"


def errors(text: str) -> list[str]:
    """The error lines of a config that must not load."""
    with pytest.raises(config.ConfigError) as exc:
        config.load_text(textwrap.dedent(text), "t.yaml")
    assert exc.value.errors
    return exc.value.errors


def check_config(path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ixpect", "check-config", *flags, str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


# -- errors: one line each, at the right line, with a useful message ---------------

def test_unknown_key_is_reported_at_its_line():
    assert errors("""\
        probes:
          arp_bogon:
            enable: true
            enabel: false
        """) == ["t.yaml:4: probes.arp_bogon.enabel: unknown key (did you mean 'enable'?)"]


def test_unknown_top_level_key():
    assert errors("probes: {}\nprobe: {}\n") == ["t.yaml:2: probe: unknown key (did you mean 'probes'?)"]


def test_bad_mac():
    assert errors("""\
        probes:
          arp_neighbor:
            static_resolutions:
              - {ip: 192.0.2.1, mac: "02:00:00:00:00:01"}
              - ip: 192.0.2.2
                mac: 02-00-00-00-00-02
        """) == ["t.yaml:6: probes.arp_neighbor.static_resolutions[1].mac: '02-00-00-00-00-02' "
                 "is not a MAC address: write six hex pairs as aa:bb:cc:dd:ee:ff"]


def test_unquoted_mac_read_as_number_says_to_quote_it():
    # YAML 1.1 reads 12:34:56:12:34:56 as a base-60 integer
    assert errors("""\
        probes:
          arp_neighbor:
            static_resolutions:
              - ip: 192.0.2.1
                mac: 12:34:56:12:34:56
        """) == ["t.yaml:5: probes.arp_neighbor.static_resolutions[0].mac: expected a string; "
                 "YAML reads the unquoted 12:34:56:12:34:56 as a number: put it in quotes"]


def test_prefix_with_host_bits_set():
    assert errors("""\
        probes:
          arp_bogon:
            prefixes: [192.0.2.0/24, 192.0.2.1/24]
          ipv6_bogon:
            prefixes:
              - 2001:db8::1/64
        """) == [
        "t.yaml:3: probes.arp_bogon.prefixes[1]: '192.0.2.1/24' has host bits set: the prefix is 192.0.2.0/24",
        "t.yaml:6: probes.ipv6_bogon.prefixes[0]: '2001:db8::1/64' has host bits set: the prefix is 2001:db8::/64",
    ]


def test_prefix_family_and_length():
    assert errors("""\
        probes:
          arp_bogon:
            prefixes: [2001:db8::/32, 192.0.2.1]
        """) == [
        "t.yaml:3: probes.arp_bogon.prefixes[0]: '2001:db8::/32' is an IPv6 prefix, not an IPv4 one",
        "t.yaml:3: probes.arp_bogon.prefixes[1]: '192.0.2.1' is not an IPv4 prefix: the prefix length "
        "is missing (a single address is 192.0.2.1/32)",
    ]


def test_bad_addresses():
    assert errors("""\
        probes:
          arp_neighbor:
            static_resolutions: [{ip: 192.0.2.256, mac: "02:00:00:00:00:01"}]
          ipv6_neighbor:
            static_resolutions: [{ip: 192.0.2.1, mac: "02:00:00:00:00:01"}]
        """) == [
        "t.yaml:3: probes.arp_neighbor.static_resolutions[0].ip: '192.0.2.256' is not an IPv4 address "
        "(Octet 256 (> 255) not permitted in '192.0.2.256')",
        "t.yaml:5: probes.ipv6_neighbor.static_resolutions[0].ip: '192.0.2.1' is an IPv4 address, not an IPv6 one",
    ]


@pytest.mark.parametrize("value, message", [
    ("5 minutes please", "'5 minutes please' is not a duration: expected a number at 'please'"),
    ("90", "'90' is not a duration: time unit needed after 90, e.g. '90s' or '90min'"),
    ("0s", "'0s' is zero: a duration here must be positive"),
    (90, 'expected a string or a mapping such as "15s", got integer 90'),
])
def test_bad_duration(value, message):
    text = f"probes:\n  bum_rate:\n    window: {value!r}\n" if isinstance(value, str) else \
        f"probes:\n  bum_rate:\n    window: {value}\n"
    assert errors(text) == [f"t.yaml:3: probes.bum_rate.window: {message}"]


def test_bad_ether_types():
    assert errors("""\
        probes:
          ether_type:
            allowed_ether_types:
              - 0x0800
              - 0x05dc
              - 0x10000
              - "0xzz"
              - "0x88cc"
        """) == [
        "t.yaml:5: probes.ether_type.allowed_ether_types[1]: 1500 (0x05dc) is an 802.3 length, "
        "not an EtherType (EtherTypes are 0x0600..0xffff)",
        "t.yaml:6: probes.ether_type.allowed_ether_types[2]: 65536 (0x10000) is out of range: "
        "EtherTypes are 0x0600..0xffff",
        "t.yaml:7: probes.ether_type.allowed_ether_types[3]: '0xzz' is not an EtherType: "
        "write an integer or a hex string such as '0x88cc'",
    ]


def test_bad_event_name_in_a_filter():
    assert errors("""\
        event:
          notifiers:
            log:
              channels:
                - events: [ARP_BOGON_SOURCE, ARP_NEIGHBOUR_UNKNOWN]
        """) == ["t.yaml:5: event.notifiers.log.channels[0].events[1]: 'ARP_NEIGHBOUR_UNKNOWN' "
                 "is not a known event type (did you mean 'ARP_NEIGHBOR_UNKNOWN'?)"]


EMAIL = """\
event:
  notifiers:
    email:
      smtp:
        host: smtp.example.net
        auth:
          user: ixpect
          {auth}
      from: ixpect@example.net
      channels:
        - to: [noc@example.net]
"""


def test_pass_and_pass_file_are_mutually_exclusive():
    assert errors(EMAIL.format(auth="pass: s3cret\n          pass_file: /run/pass")) == [
        "t.yaml:9: event.notifiers.email.smtp.auth.pass_file: pass and pass_file are mutually exclusive: set only one"]


def test_password_is_required_with_auth():
    assert errors(EMAIL.format(auth="mechanism: login")) == [
        "t.yaml:6: event.notifiers.email.smtp.auth: missing required key: one of 'pass', 'pass_file'"]


def test_missing_required_key_is_reported_at_the_parent():
    assert errors("""\
        event:
          notifiers:
            email:
              smtp: {port: 587}
              channels:
                - to: [noc@example.net]
                  events: []
        """) == [
        "t.yaml:3: event.notifiers.email: missing required key 'from'",
        "t.yaml:4: event.notifiers.email.smtp: missing required key 'host'",
    ]


def test_enum_lists_the_choices_once():
    assert errors(EMAIL.replace("auth:", "encryption: ssl\n        auth:").format(auth="pass: x")) == [
        "t.yaml:6: event.notifiers.email.smtp.encryption: 'ssl' is not one of: tls, starttls, smtps, none"]


def test_yaml_syntax_error():
    assert errors("probes:\n  arp_bogon:\n    enable: true\n   stp: {}\n") == [
        "t.yaml:4: YAML syntax error: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 2)"]


def test_duplicate_keys_are_errors():
    # YAML would silently keep only the second arp_bogon
    assert errors("""\
        probes:
          arp_bogon: {enable: true}
          arp_bogon: {prefixes: [192.0.2.0/24]}
        """) == ["t.yaml:3: probes.arp_bogon: duplicate key (first at line 2)"]


def test_empty_and_non_mapping_documents():
    assert errors("") == ["t.yaml:1: (top level): the config is empty"]
    assert errors("- probes\n") == ["t.yaml:1: (top level): expected a mapping, got a list"]


def test_every_error_is_reported_sorted_by_line():
    lines = errors("""\
        event:
          collection_window: soon
        probes:
          stp: {enable: yes please}
          arp_bogon: {enable: true, prefixes: [10.0.0.1/8]}
        """)
    assert [int(line.split(":")[1]) for line in lines] == [2, 4, 5]


# -- what a loaded config looks like ------------------------------------------------

def test_defaults_are_filled_in():
    cfg = config.load_text("probes:\n  arp_bogon:\n    enable: true\n")
    assert cfg["probes"]["arp_bogon"] == {"enable": True, "prefixes": [], "replies": False}
    assert cfg["probes"]["stp"] == {"enable": False}
    assert cfg["probes"]["ipv6_bogon"] == {"enable": False, "prefixes": [], "ignore_link_local": True}
    assert cfg["probes"]["bum_rate"] == {"enable": False, "window": 60.0, "max_sources": 1_000_000, "thresholds": {}}
    assert cfg["probes"]["ether_type"]["allowed_ether_types"] == [0x0800, 0x0806, 0x86DD]
    assert cfg["event"] == {"collection_window": 60.0, "max_batches": 10_000, "catch_all": "compatible", "notifiers": {},
                            "delivery": {"retry_initial": 5.0, "retry_max": 600.0, "max_age": 86400.0}}


def test_defaults_inside_lists_and_notifiers():
    cfg = config.load_text("""\
event:
  notifiers:
    log: {}
    http:
      channels: [{url: "https://example.net/hook"}]
    alertmanager:
      channels: [{url: "http://127.0.0.1:9093", events: [IXPECT_TEST]}]
""")
    notifiers = cfg["event"]["notifiers"]
    assert notifiers["log"] == {"format": "text", "channels": [{"events": []}]}
    assert notifiers["http"]["channels"] == [{
        "url": "https://example.net/hook", "method": "POST", "content_type": "application/json",
        "headers": {}, "verify_tls": True, "timeout": 10.0, "events": []}]
    assert notifiers["alertmanager"]["channels"] == [
        {"url": "http://127.0.0.1:9093", "timeout": 10.0, "verify_tls": True, "events": ["IXPECT_TEST"]}]
    assert notifiers["alertmanager"]["resolve_after"] == 300.0
    assert notifiers["alertmanager"]["severity"]["default"] == "warning"


def test_durations_are_converted_to_seconds():
    cfg = config.load_text("""\
probes:
  bum_rate: {window: 1hour 12min 5s}
event:
  collection_window: 100ms
  delivery: {max_age: 1week}
""")
    assert cfg["probes"]["bum_rate"]["window"] == 4325.0
    assert cfg["event"]["collection_window"] == 0.1
    assert cfg["event"]["delivery"] == {"retry_initial": 5.0, "retry_max": 600.0, "max_age": 604800.0}


def test_upstream_serialized_durations():
    """DD-IX's IXpect reads a duration as humantime text or as serde's `{secs, nanos}`."""
    cfg = config.load_text("""\
probes:
  bum_rate: {window: {secs: 15, nanos: 500000000}}
event:
  collection_window: {secs: 60}
""")
    assert cfg["probes"]["bum_rate"]["window"] == 15.5
    assert cfg["event"]["collection_window"] == 60.0


@pytest.mark.parametrize("value, where, message", [
    ("{secs: 0, nanos: 0}", "", "{'secs': 0, 'nanos': 0} is zero: a duration here must be positive"),
    ("{secs: -1}", ".secs", "-1 is less than the minimum of 0"),
    ("{secs: 1, nanos: 1000000000}", ".nanos", "1000000000 is greater than the maximum of 999999999"),
    ("{nanos: 5}", "", "missing required key 'secs'"),
    ("{secs: 1, millis: 5}", ".millis", "unknown key"),
    ("{secs: '15'}", ".secs", "expected an integer, got string '15'"),
])
def test_bad_serialized_duration(value, where, message):
    assert errors(f"event:\n  collection_window: {value}\n") == [
        f"t.yaml:2: event.collection_window{where}: {message}"]


def test_null_threshold_is_no_limit():
    """Upstream allows `multicast: null`; like a missing kind, it sets no limit."""
    cfg = config.load_text("probes:\n  bum_rate:\n    thresholds: {broadcast: 5, multicast: null, unicast: ~}\n")
    assert cfg["probes"]["bum_rate"]["thresholds"] == {"broadcast": 5, "multicast": None, "unicast": None}


def test_values_are_canonical():
    cfg = config.load_text("""\
probes:
  ether_type: {allowed_ether_types: [0x0800, "0x88CC", 34525]}
  ipv6_bogon: {prefixes: ["2001:DB8:0::/48"]}
  ipv6_neighbor:
    static_resolutions: [{ip: "2001:DB8:0:0::1", mac: "02:AB:CD:EF:00:01"}]
""")
    assert cfg["probes"]["ether_type"]["allowed_ether_types"] == [0x0800, 0x88CC, 0x86DD]
    assert cfg["probes"]["ipv6_bogon"]["prefixes"] == ["2001:db8::/48"]
    assert cfg["probes"]["ipv6_neighbor"]["static_resolutions"] == [{"ip": "2001:db8::1", "mac": "02:ab:cd:ef:00:01"}]


def test_one_ip_may_have_several_macs():
    cfg = config.load_text("""\
probes:
  arp_neighbor:
    static_resolutions:
      - {ip: 192.0.2.1, mac: "02:00:00:00:00:01"}
      - {ip: 192.0.2.1, mac: "02:00:00:00:00:02"}
""")
    assert [r["mac"] for r in cfg["probes"]["arp_neighbor"]["static_resolutions"]] == [
        "02:00:00:00:00:01", "02:00:00:00:00:02"]


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "ixpect.conf.yaml"
    path.write_text("member_table: members.json\n"
                    "event:\n  templates_dir: /srv/templates\n"
                    "  notifiers:\n    matrix:\n      homeserver: https://m.example.net\n"
                    "      access_token_file: secrets/token\n      channels: [{room_id: '!r:m.example.net'}]\n")
    cfg = config.load(path, files=False)
    assert cfg["member_table"] == str(tmp_path / "etc" / "members.json")
    assert cfg["event"]["templates_dir"] == "/srv/templates"
    assert cfg["event"]["notifiers"]["matrix"]["access_token_file"] == str(tmp_path / "etc" / "secrets" / "token")


def test_ddix_config_validates_unchanged_and_reads_as_ours():
    cfg = config.load(DDIX, files=False)  # its secret files are the deployment's
    assert cfg["probes"]["bum_rate"]["window"] == 15.0
    log = cfg["event"]["notifiers"]["log"]
    assert log["channels"][0]["events"][:2] == ["ARP_BOGON_SOURCE", "ARP_BOGON_TARGET"]
    assert "events" not in log and "enable" not in log
    smtp = cfg["event"]["notifiers"]["email"]["smtp"]
    assert smtp["encryption"] == "tls"
    assert smtp["auth"] == {"mechanism": "plain", "user": "noreply@example.net", "pass_file": "/run/secrets/mail/pass"}


def test_disabled_notifier_is_left_out():
    cfg = config.load_text("event:\n  notifiers:\n    log: {enable: false}\n"
                           "    slack: {channels: [{webhook_url: 'https://hooks.example.net/x'}]}\n")
    assert list(cfg["event"]["notifiers"]) == ["slack"]


def test_example_config_validates_and_uses_every_key():
    cfg = config.load(EXAMPLE, files=False)
    assert set(cfg["event"]["notifiers"]) == {"log", "email", "http", "matrix", "slack", "alertmanager"}
    text = EXAMPLE.read_text()
    missing = [p for p in schema_paths() if not re.search(rf"\b{re.escape(p.split('.')[-1])}:", text)]
    assert not missing


# -- validate(doc): the API for rendered documents ---------------------------------

def test_validate_a_document():
    assert config.validate({"probes": {"stp": {"enable": True}}}) == []
    assert config.validate({"probes": {"stp": {"enable": "yes"}, "arp_bogon": {"prefixes": ["10.1.0.0/8"]}}}) == [
        "probes.arp_bogon.prefixes[0]: '10.1.0.0/8' has host bits set: the prefix is 10.0.0.0/8",
        "probes.stp.enable: expected true or false, got string 'yes'",
    ]


# -- the command ---------------------------------------------------------------------

def test_check_config_accepts_a_valid_config():
    for path in (DDIX, EXAMPLE):  # their secret files are the deployment's
        result = check_config(path, "--skip-files")
        assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


def test_check_config_reports_every_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(DDIX.read_text().replace("window: 15s", "window: 15 secs")
                    .replace("- 2054 # ARP", "- 1500").replace("stp:", "spt:"))
    result = check_config(path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:13: probes.bum_rate.window: '15 secs' is not a duration: unknown time unit 'secs'; "
        "use ns, us, ms, s, min, h, d, w, M (month), y (and long forms such as sec, hours, days)",
        f"{path}:22: probes.ether_type.allowed_ether_types[1]: 1500 (0x05dc) is an 802.3 length, "
        "not an EtherType (EtherTypes are 0x0600..0xffff)",
        f"{path}:35: probes.spt: unknown key (did you mean 'stp'?)",
    ]


def test_check_config_on_syntax_error_and_unreadable_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("probes: [\n")
    result = check_config(path)
    assert result.returncode == 1
    assert re.fullmatch(rf"{re.escape(str(path))}:2: YAML syntax error: .+\n", result.stderr)
    result = check_config(tmp_path / "absent.yaml")
    assert result.returncode == 1
    assert result.stderr == f"{tmp_path / 'absent.yaml'}: cannot read the config: No such file or directory\n"


# -- the schema itself ---------------------------------------------------------------

def walk(sub, path=""):
    """(dotted path, resolved schema) of every property in the schema; list items as [].
    A duration is a value, whichever of its two spellings is used: not a section."""
    sub = config._deref(sub)
    if sub.get("format") == "humantime":
        return
    for key, prop in sub.get("properties", {}).items():
        yield f"{path}{key}", config._deref(prop)
        yield from walk(prop, f"{path}{key}.")
    if "items" in sub:
        yield from walk(sub["items"], path[:-1] + "[].")


def schema_paths() -> list[str]:
    return [p for p, _ in walk(config.schema())]


def test_schema_is_valid_2020_12():
    Draft202012Validator.check_schema(config.schema())


def test_every_property_is_described_and_every_object_closed():
    for path, sub in walk(config.schema()):
        assert sub.get("description"), f"{path} has no description"
        if "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_defaults_and_examples_are_valid():
    defs = config.schema()["$defs"]
    for path, sub in walk(config.schema()):
        validator = Draft202012Validator({**sub, "$defs": defs}, format_checker=config._validator().format_checker)
        for value in ([sub["default"]] if "default" in sub else []) + sub.get("examples", []):
            assert not list(validator.iter_errors(value)), f"{path}: {value!r}"


def test_docs_document_every_key():
    section = (REPO / "docs" / "configuration.md").read_text()
    missing = [p for p in schema_paths() if f"`{p}`" not in section]
    missing += [e for e in config.schema()["$defs"]["event_type"]["enum"] if e not in section]
    assert not missing


def test_a_broken_alertmanager_link_template_is_a_config_error():
    text = """\
event:
  notifiers:
    alertmanager:
      link: "https://portal.example/{{ member.asn"
      channels: [{url: "http://127.0.0.1:9093", urls: ["http://127.0.0.1:9094"]}]
"""
    got = errors(text)
    assert got[0].startswith("t.yaml:4: event.notifiers.alertmanager.link: "
                             "'https://portal.example/{{ member.asn' is not a jinja2 template: "), got
    assert got[1:] == ["t.yaml:5: event.notifiers.alertmanager.channels[0].urls: url and urls are mutually exclusive: "
                       "set only one"]
    assert errors(text.replace(', urls: ["http://127.0.0.1:9094"]', ", bearer_token: t, basic_auth: {username: u}")
                  .replace("{{ member.asn", "{{ member.asn }}")) == [
        "t.yaml:5: event.notifiers.alertmanager.channels[0].basic_auth: missing required key: one of 'password', "
        "'password_file'",
        "t.yaml:5: event.notifiers.alertmanager.channels[0].bearer_token: basic_auth and bearer_token are mutually "
        "exclusive: set only one"]


# -- YAML construction --------------------------------------------------------------

#: every kind of node and tag the YAML loaders construct, and the ways to fail
YAML_DOCS = [
    "a: 1\nb: [1, 2.5, .nan, -.inf, 0x1f, 0o17, 1_000, 190:20:30, true, no, ~, null, '', \"x\"]\n",
    "{1: a, 2.0: b, true: c, ~: d, 2001-12-14: e, '1': f}\n",
    "s: !!str 123\ni: !!int '42'\nf: !!float '1'\nb: !!binary aGVsbG8=\nt: 2001-12-14t21:59:43.10-05:00\n",
    "set: !!set {a, b}\nomap: !!omap [{a: 1}, {b: 2}]\npairs: !!pairs [{a: 1}, {a: 2}]\n",
    "base: &b {x: 1, y: 2}\nmerged: {<<: *b, y: 3}\nlist: [*b, *b]\n",
    "m: {<<: {x: 1}, y: 2}\nv: {=: 5}\n",
    "a: 1\na: 2\nb: {c: 1, c: [1, 2]}\n",
    "? [a, b]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "x: !!str [1]\n",
    "x: !custom 1\ny: !!int nope\n",
    "- !!map {a: 1}\n- !!seq [1]\n- !!str\n- !!null ''\n",
    "probes:\n  arp_neighbor:\n    static_resolutions:\n    - {ip: 192.0.2.1, mac: '02:00:00:00:00:01'}\n",
    "[[[[[[1]]]]]]\n", "just a string\n", "123\n", "!!set {a}\n", "'quoted'\n",
]


@pytest.mark.parametrize("loader_class", [config._SafeLoader, config._FAST_LOADER], ids=["python", "libyaml"])
def test_a_document_is_constructed_as_the_loader_constructs_it(loader_class):
    texts = YAML_DOCS + [p.read_text() for p in (EXAMPLE, DDIX, REPO / "examples" / "demo.conf.yaml")]
    for text in texts:
        loader = loader_class(text)
        try:
            expected = loader.construct_document(loader.get_single_node())
        except yaml.MarkedYAMLError as exc:
            with pytest.raises(config.ConfigError) as got:
                config.parse_yaml(text, "t.yaml", loader_class)
            assert exc.problem in got.value.errors[0], text
            continue
        assert repr(config.parse_yaml(text, "t.yaml", loader_class)[0]) == repr(expected), text


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("text", ["probes: {stp: {enable: true}}\n", "probes: {stp: {enabel: true}}\n", "a: [\n"])
def test_a_load_pauses_the_cycle_collector_and_leaves_it_as_it_was(text, enabled):
    import gc

    seen = []
    real = config._Lines.__init__

    def walk(self, root):
        seen.append(gc.isenabled())
        real(self, root)

    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(config._Lines, "__init__", walk)
            try:
                config.load_text(text, "t.yaml")
            except config.ConfigError:
                pass
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
    assert set(seen) <= {False}
