from dsinfra.cli.main import run

run()
