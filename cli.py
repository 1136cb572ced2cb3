"""`python cli.py ...` is the same app as the `agentopt` console script (no install needed)."""

from agentopt.cli import main

if __name__ == "__main__":
    main()
