from labelstore_client.cli import main

main()
