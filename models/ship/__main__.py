"""``python -m models.ship``: see :mod:`models.ship.cli`."""
from models.ship.cli import main

main()
