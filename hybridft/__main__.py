from hybridft.cli.main import run

run()
