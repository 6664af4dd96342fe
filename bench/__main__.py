"""``python -m bench inference|pipeline ...`` (what ``yuqing bench ...`` runs)."""
from bench.cli import main

main()
