"""``python -m audit …`` (and ``torchrun … -m audit run config.yaml``) is the ``cvaudit`` CLI."""

from audit.cli import main

if __name__ == "__main__":
    main(prog_name="cvaudit")
