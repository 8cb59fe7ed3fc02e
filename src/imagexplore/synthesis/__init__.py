"""Chapter 8: image synthesis — translation (pix2pix, instantiation network) and SwapGAN."""
