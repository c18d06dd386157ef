from leakwatch.cli import main

main()
