"""``python -m helpdesk``: the same command as ``helpdesk`` (where the scripts folder is not on PATH)."""

from helpdesk.cli import main

if __name__ == "__main__":
    main()
