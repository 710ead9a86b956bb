"""``rnnkit`` command modules, one per command (registered in :data:`rnnkit.cli.COMMANDS`)."""
