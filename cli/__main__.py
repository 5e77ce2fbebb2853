from dsinfra.cli.entry import run

run()
