"""Render a Jinja2 template with JSON variables the way Ansible's template module does
(trim_blocks, trailing newline kept), so that nix/evpn.nix and the Ansible role write
the same file from the same template. Usage: render-jinja.py TEMPLATE VARS.json"""

import json
import sys

import jinja2

env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
with open(sys.argv[1]) as tpl, open(sys.argv[2]) as variables:
    sys.stdout.write(env.from_string(tpl.read()).render(json.load(variables)))
