"""Pictures that show what a convolutional network computes: the filter explorer (`cnnlab filters`)."""
