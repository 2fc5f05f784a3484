#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hol.settings")
    from django.core.management import execute_from_command_line

    from hol import datadir

    datadir.prepare()  # the data dir and the secret keys every HOL process shares
    execute_from_command_line(sys.argv)
