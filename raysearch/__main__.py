from raysearch.cli import main

main()
