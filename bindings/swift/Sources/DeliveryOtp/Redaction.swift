// Hand-written, beside the generated DeliveryOtp.swift: uniffi gives these
// values a redacted `debugDescription` from the Rust core (so `print`,
// string interpolation and `String(reflecting:)` never show a code), but it
// cannot change their `Mirror`, which `dump`, debuggers and reflection-based
// loggers read field by field. These mirrors list only the fields that hold
// no code.

extension MessageValues: CustomReflectable {
    /// Everything but the code.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "sender": sender, "deliveryId": deliveryId, "code": "[redacted]",
                "expiresAt": expiresAt, "utcOffsetMinutes": utcOffsetMinutes,
            ],
            displayStyle: .struct)
    }
}

extension Sms: CustomReflectable {
    /// The encoding and size; the text holds the code.
    public var customMirror: Mirror {
        Mirror(
            self, children: ["text": "[redacted]", "encoding": encoding, "units": units, "segments": segments],
            displayStyle: .struct)
    }
}

extension Email: CustomReflectable {
    /// Nothing of the subject or body, which hold the code.
    public var customMirror: Mirror {
        Mirror(self, children: ["subject": "[redacted]", "body": "[redacted]"], displayStyle: .struct)
    }
}

extension Handover: CustomReflectable {
    /// The kind of handover, its attempts and reason; never the code.
    public var customMirror: Mirror {
        switch self {
        case .deliveredOffline:
            return Mirror(self, children: ["code": "[redacted]"], displayStyle: .enum)
        case .deliveredOnline(_, let attemptsUsed):
            return Mirror(self, children: ["code": "[redacted]", "attemptsUsed": attemptsUsed], displayStyle: .enum)
        case .notDelivered(let reason):
            return Mirror(self, children: ["reason": reason], displayStyle: .enum)
        }
    }
}

extension ReceiptOutcome: CustomReflectable {
    /// How the code was checked, or why there was no handover; never the code.
    public var customMirror: Mirror {
        switch self {
        case .delivered(_, let verified):
            return Mirror(self, children: ["code": "[redacted]", "verified": verified], displayStyle: .enum)
        case .notDelivered(let reason):
            return Mirror(self, children: ["reason": reason], displayStyle: .enum)
        }
    }
}
