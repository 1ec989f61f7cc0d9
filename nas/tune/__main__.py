from nas.tune.cli import main

if __name__ == "__main__":  # spawned workers import this module again: it must not start a study
    main()
