"""Looking inside: the convolution explorer (`cnnlab filters`) and model introspection (`cnnlab explain`)."""
