from opsloop.cli import main

main()
