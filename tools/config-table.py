#!/usr/bin/env python3
"""Prints the configuration table of every service as Markdown, from each
binary's own --help, so the README cannot drift from the code.

usage: tools/config-table.py BUILD_DIR"""
import re
import subprocess
import sys

SERVICES = [("ingest", "crm-ingest"), ("router", "crm-router"), ("email-worker", "crm-email-worker"),
            ("sms-worker", "crm-sms-worker"), ("whatsapp-worker", "crm-whatsapp-worker"),
            ("webhook-receiver", "crm-webhook-receiver"), ("projector", "crm-projector")]


def parse(text):
    rows = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  ([A-Z][A-Z0-9_]+) \(([^)]*)\)", line)
        if not m:
            continue
        help_lines = []
        for nxt in lines[i + 1:]:
            if not nxt.startswith("      "):
                break
            help_lines.append(nxt.strip())
        rows.append((m.group(1), m.group(2), " ".join(help_lines)))
    return rows


def main():
    build = sys.argv[1]
    seen = {}
    order = []
    for svc, binary in SERVICES:
        path = "%s/services/%s/%s" % (build, svc, binary)
        out = subprocess.run([path, "--help"], capture_output=True, text=True)
        for name, kind, help_text in parse(out.stdout + out.stderr):
            if name not in seen:
                seen[name] = [{}, help_text, []]
                order.append(name)
            seen[name][0][svc] = kind
            seen[name][2].append(svc)
    print("| variable | services | type, default | meaning |")
    print("| --- | --- | --- | --- |")
    for name in order:
        kinds, help_text, svcs = seen[name]
        svc_list = "all" if len(svcs) == len(SERVICES) else ", ".join(svcs)
        if len(set(kinds.values())) == 1:
            kind = next(iter(kinds.values()))
        else:
            kind = "; ".join("%s: %s" % (svc, k) for svc, k in kinds.items())
        print("| `%s` | %s | %s | %s |" % (name, svc_list, kind.replace("|", "\\|"), help_text.replace("|", "\\|")))


if __name__ == "__main__":
    main()
