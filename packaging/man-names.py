#!/usr/bin/env python3
"""Renames generate-manual's pages to the names `man` finds (tether.run.1 -> tether-run.1) and
gives each a NAME that whatis/lexgrog can read ("tether-run - ..."), keeping the command as
typed ("tether run") in the synopsis. Usage: man-names.py DIRECTORY"""
import os
import re
import sys

d = sys.argv[1]
for f in sorted(os.listdir(d)):
    if not (f.startswith("tether.") and f.endswith(".1")):
        continue
    text = open(os.path.join(d, f)).read()
    m = re.search(r'^\.Nm "?([^"\n]+)"?$', text, re.M)
    command = m.group(1) if m else f[:-2].replace(".", " ")
    page = command.replace(" ", "-")
    text = text.replace(m.group(0), f".Nm {page}", 1) if m else text
    # The synopsis shows the command as it is typed.
    text = re.sub(r"(\.Sh SYNOPSIS\n)\.Nm\n", lambda x: x.group(1) + f'.Nm "{command}"\n', text, count=1)
    os.remove(os.path.join(d, f))
    open(os.path.join(d, page + ".1"), "w").write(text)
