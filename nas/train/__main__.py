from nas.train.cli import main

main()
