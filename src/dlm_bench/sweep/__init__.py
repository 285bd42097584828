"""The sweep: measuring a config's cells (`runner`), timing the ratios the summary publishes as interleaved pairs
(`pairs`), and rebuilding records from a study's tables (`restore`)."""
