"""``python -m obliviate.cli ...`` (what ``accelerate launch -m obliviate.cli unlearn ...`` runs)."""

from obliviate.cli import main

main()
