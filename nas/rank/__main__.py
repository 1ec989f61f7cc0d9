from nas.rank.cli import main

main()
