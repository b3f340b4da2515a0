"""Back-office events: the catalogue, webhook endpoints, signing, and the delivery worker."""
