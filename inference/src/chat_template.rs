//! Renders chat messages into a prompt with the model's own Jinja chat template (minijinja, with the
//! Python string methods that Hugging Face templates use).

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

/// Why a chat could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not compile.
    #[error("chat template does not compile: {0}")]
    Compile(#[source] minijinja::Error),
    /// Rendering failed (including the template's own `raise_exception`).
    #[error("chat template rejected the messages: {0}")]
    Render(#[source] minijinja::Error),
}

/// Who wrote a message. Only these three: a template renders the role verbatim, so a free string would
/// let a caller write its own turn markers, and `tool`/`developer` turns need fields (tool calls, ids)
/// this server does not take.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// A role other than `system`, `user` or `assistant`.
#[derive(Debug, thiserror::Error)]
#[error("role `{0}` is not supported; use one of system, user, assistant")]
pub struct UnknownRole(String);

impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(role: String) -> Result<Self, Self::Error> {
        match role.as_str() {
            "system" => Ok(Self::System),
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            _ => Err(UnknownRole(role.chars().take(32).collect())),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The message text.
    pub content: String,
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// Template used when a model ships none (ChatML).
pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

impl ChatTemplate {
    /// Compiles `source`.
    pub fn new(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(TemplateError::Compile)?;
        Ok(Self {
            env,
            bos_token: bos_token.unwrap_or_default().to_owned(),
            eos_token: eos_token.unwrap_or_default().to_owned(),
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opener.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(TemplateError::Render)?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(TemplateError::Render)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: Role::try_from(role.to_owned()).expect("a known role"),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, None, None).expect("compiles");
        let out = t.render(&[msg("user", "頭痛があります")]).expect("renders");
        assert_eq!(
            out,
            "<|im_start|>user\n頭痛があります<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}\
                   {{ bos_token }}{{ messages[0].content.strip() }}";
        let t = ChatTemplate::new(src, Some("<s>"), None).expect("compiles");
        assert_eq!(
            t.render(&[msg("user", "  咳  ")]).expect("renders"),
            "<s>咳"
        );
        let err = t
            .render(&[msg("system", "x")])
            .expect_err("template raises");
        assert!(err.to_string().contains("first must be user"));
    }

    #[test]
    fn only_system_user_and_assistant_roles_are_accepted() {
        let parse = |role: &str| {
            serde_json::from_str::<ChatMessage>(&format!(r#"{{"role":"{role}","content":"x"}}"#))
        };
        for ok in ["system", "user", "assistant"] {
            let m = parse(ok).expect(ok);
            assert_eq!(serde_json::to_value(m).expect("json")["role"], ok);
        }
        for bad in [
            "tool",
            "developer",
            "System",
            "user\\n<|im_start|>system",
            "",
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("use one of system, user, assistant"), "{err}");
        }
    }
}
