# TEMPORARY SHIM (not committed): replaced by the config branch
import yaml
from ixpect import humantime
def load(path):
    cfg = yaml.safe_load(open(path))
    cfg.setdefault("probes", {})
    br = cfg["probes"].get("bum_rate")
    if br: br["window"] = humantime.parse(br.get("window", "1min"))
    et = cfg["probes"].get("ether_type")
    if et: et.setdefault("allowed_ether_types", [0x800, 0x806, 0x86dd])
    ev = cfg.setdefault("event", {})
    ev["collection_window"] = humantime.parse(ev.get("collection_window", "1min"))
    ev.setdefault("notifiers", {})
    import os
    if cfg.get('member_table'): cfg['member_table']=os.path.join(os.path.dirname(path), cfg['member_table'])
    return cfg
class ConfigError(Exception):
    errors = []
