"""`tradebot` subcommands that live in modules of their own.

Each module has `register(sub)`, which adds its parser to the `tradebot` subparsers and sets
`handler` (a function of the parsed arguments returning the exit status) as a default.
`tradebot.cli.COMMAND_MODULES` lists them.
"""
