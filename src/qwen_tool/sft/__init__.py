"""Supervised fine-tuning with TL-Training's MAE (mask erroneous turns) and PKT (prioritise key tokens)."""
