"""``python -m inpaintssl`` runs the command-line interface."""

from inpaintssl.cli import main

raise SystemExit(main())
