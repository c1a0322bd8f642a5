//! Paging of the list endpoints (`/api/v1/requests`, `/api/v1/sessions`):
//! query parameters `page` (from 1) and `page_size` (1..=500, default 50);
//! answers `{items, total, total_capped, page, page_size}`.

use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use crate::errors::ApiError;

pub const MAX_PAGE_SIZE: i64 = 500;
const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1-based page.
    #[param(minimum = 1, maximum = 1000000, default = 1, required = false)]
    pub page: i64,
    /// Items per page.
    #[param(minimum = 1, maximum = 500, default = json!(DEFAULT_PAGE_SIZE), required = false)]
    pub page_size: i64,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl Paging {
    /// Takes `page` and `page_size`; false for any other parameter.
    pub fn take(&mut self, name: &str, value: &str) -> Result<bool, ApiError> {
        match name {
            "page" => self.page = parse(name, value)?,
            "page_size" => self.page_size = parse(name, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn check(&self) -> Result<(), ApiError> {
        if !(1..=MAX_PAGE).contains(&self.page) {
            return Err(ApiError::validation(
                "page",
                format!("must be between 1 and {MAX_PAGE}"),
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ApiError::validation(
                "page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(())
    }

    /// ` LIMIT … OFFSET …` of this page.
    pub fn push_limit(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" LIMIT ")
            .push_bind(self.page_size)
            .push(" OFFSET ")
            .push_bind((self.page - 1) * self.page_size);
    }

    pub fn page<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total,
            total_capped: false,
            page: self.page,
            page_size: self.page_size,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items matching the filters, on all pages (see `total_capped`).
    pub total: i64,
    /// The count stopped at its cap (the audit log counts up to 10,000
    /// rows): more items match than `total`, which is then a lower bound.
    /// Always false for lists counted exactly.
    pub total_capped: bool,
    pub page: i64,
    pub page_size: i64,
}

pub fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::validation(field, format!("invalid value {value:?}")))
}
