"""`python -m llava_mixes COMMAND ...`: the `llava-mixes` command line, run by the interpreter that imports this
package (so the builder is registered with `datasets`, and no `.venv/bin` on PATH is needed)."""

from llava_mixes.cli.main import main

raise SystemExit(main())
