"""Pure data: msgspec structs and enums shared by every layer. No I/O here."""
