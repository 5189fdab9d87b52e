from grappa.train.cli import main

main()
